"""Deterministic, vmappable evaluation rollouts."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from rlx.types import Agent


def episode_limit(env: Any, env_params: Any, default: int = 1000) -> int:
    """The env's own episode cap, used as the evaluation horizon."""
    for obj, attr in ((env_params, "max_steps_in_episode"), (env, "episode_length"), (env_params, "max_steps")):
        value = getattr(obj, attr, None)
        if value is not None:
            try:
                return int(value)
            except (TypeError, jax.errors.ConcretizationTypeError):
                pass
    return default


def evaluate(
    agent: Agent,
    params: Any,
    cfg: Any,
    env: Any,
    env_params: Any,
    key: jax.Array,
    num_episodes: int = 16,
    max_steps: int | None = None,
    gamma: float = 1.0,
    deterministic: bool = True,
) -> dict[str, jax.Array]:
    """Run `num_episodes` episodes in parallel, each to its end or `max_steps`.

    Returns `return` and `discounted_return` (`[N]`, or `[N, d]` for vector rewards,
    discounted with `gamma`) and `length` (`[N]`). Pure and vmappable over params/cfg.
    """
    horizon = episode_limit(env, env_params) if max_steps is None else int(max_steps)
    key, k_reset = jax.random.split(key)
    obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, num_episodes), env_params)
    d = getattr(env, "reward_dim", None)
    zeros = jnp.zeros((num_episodes, d) if d else (num_episodes,), jnp.float32)

    def policy(o, k):
        return agent.act(params, o, k, cfg, deterministic)

    def step(carry, t):
        obs, state, key, alive, ret, disc, length = carry
        key, k_act, k_env = jax.random.split(key, 3)
        action = jax.vmap(policy)(obs, jax.random.split(k_act, num_episodes))
        obs, state, reward, term, trunc, _ = jax.vmap(env.step, (0, 0, 0, None))(
            jax.random.split(k_env, num_episodes), state, action, env_params
        )
        w = alive.astype(jnp.float32)
        w = w.reshape(w.shape + (1,) * (reward.ndim - 1))
        ret = ret + w * reward
        disc = disc + w * (gamma**t) * reward
        length = length + alive.astype(jnp.int32)
        alive = alive & ~(term | trunc)
        return (obs, state, key, alive, ret, disc, length), None

    init = (obs, state, key, jnp.ones(num_episodes, bool), zeros, zeros, jnp.zeros(num_episodes, jnp.int32))
    (_, _, _, _, ret, disc, length), _ = jax.lax.scan(step, init, jnp.arange(horizon, dtype=jnp.float32))
    return {"return": ret, "discounted_return": disc, "length": length}
