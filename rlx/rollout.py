"""Collecting experience from a batch of auto-resetting envs: the one rollout loop that
PPO, the replay agents (DQN, SAC, DηN) and LPG share.

Every step splits the carried key as `key, k_act, k_env = split(key, 3)`, lets the
policy act on `k_act`, and steps env `i` with `split(k_env, B)[i]`. Keeping this one
place is what makes a member's stream of randomness the same in every algorithm.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax


class Step(NamedTuple):
    """One step of `B` envs (leaves `[B, ...]`); `collect` stacks what `keep` returns."""

    obs: Any  # [B, *obs_shape]: the observation acted on
    action: Any  # what the policy returned as its action (before `to_env`)
    extras: Any  # whatever else the policy returned (log-probs, ...), or None
    reward: jax.Array  # [B] (or [B, d] for vector rewards)
    terminated: jax.Array  # [B] bool
    truncated: jax.Array  # [B] bool
    next_obs: Any  # [B, *obs_shape]: the observation after the step (a reset one at episode ends)
    final_obs: Any  # [B, *obs_shape]: the true next observation (the episode's last at its end)


def step_envs(env: Any, env_params: Any, env_state: Any, action: Any, key: jax.Array) -> tuple:
    """`env.step` over a batch of `B` envs, env `i` on `split(key, B)[i]`. Returns
    `(next_obs, env_state, reward, terminated, truncated, info)`, each batched."""
    num_envs = jax.tree.leaves(action)[0].shape[0]
    return jax.vmap(env.step, (0, 0, 0, None))(jax.random.split(key, num_envs), env_state, action, env_params)


def collect(
    env: Any,
    env_params: Any,
    carry: tuple,
    policy: Callable[[Any, jax.Array], Any],
    num_steps: int,
    keep: Callable[[Step], Any] = lambda step: step,
    to_env: Callable[[Any], Any] | None = None,
) -> tuple[tuple, Any]:
    """`num_steps` steps of `B` envs in one `lax.scan`.

    carry: `(env_state [B], obs [B, ...], key)`.
    policy(obs [B, ...], key) -> action, or `(action, extras)` when it returns a tuple.
    to_env(action) -> the env's action (default: the action as is).
    keep(step) -> what is stored per step (default: the whole `Step`); its leaves come
    back stacked `[T, B, ...]`.
    Returns the new carry and the stacked rollout.
    """

    def one_step(carry, _):
        env_state, obs, key = carry
        key, k_act, k_env = jax.random.split(key, 3)
        out = policy(obs, k_act)
        action, extras = out if isinstance(out, tuple) else (out, None)
        env_action = action if to_env is None else to_env(action)
        next_obs, env_state, reward, term, trunc, info = step_envs(env, env_params, env_state, env_action, k_env)
        step = Step(obs, action, extras, reward, term, trunc, next_obs, info["final_obs"])
        return (env_state, next_obs, key), keep(step)

    return jax.lax.scan(one_step, carry, None, num_steps)
