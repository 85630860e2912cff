"""The agent contract: a small bundle of pure functions over a pytree state."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

Key = jax.Array
Metrics = dict[str, jax.Array]


class Agent(NamedTuple):
    """An optax-style bundle of pure functions. Every `agents/<algo>` module exports
    `make_agent(env, cfg) -> Agent`, closing over the env and the config's static part.

    init(key, cfg, env_params) -> state
        The whole train state as one pytree (params, optimiser, env state, key, ...).
    update(state, cfg, env_params) -> (state, metrics)
        One collect-and-learn iteration. `metrics` is a dict of scalars; it always has
        `env_steps` (cumulative, per member) and `episode_return` (mean over envs of the
        last finished episode's return, NaN while no episode has finished).
    act(params, obs, key, cfg, deterministic) -> action
        For evaluation and deployment; `obs` is one unbatched observation.
    policy_params(state) -> params
        What `act` needs, taken out of a train state.
    num_updates(cfg) -> int
        How many `update` calls make one full training run (from static fields only).
    """

    init: Callable[..., Any]
    update: Callable[..., tuple[Any, Metrics]]
    act: Callable[..., Any]
    policy_params: Callable[[Any], Any]
    num_updates: Callable[[Any], int]
