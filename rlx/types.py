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
        One collect-and-learn iteration. `metrics` is a dict of scalars (`[d]` vectors for
        a vector-reward agent's returns); it always has
        `env_steps` (cumulative, per member) and `episode_return` (mean over envs of the
        last finished episode's return, NaN while no episode has finished).
    act(params, obs, key, cfg, deterministic) -> action
        For evaluation and deployment; `obs` is one unbatched observation.
    policy_params(state) -> params
        What `act` needs, taken out of a train state.
    num_updates(cfg) -> int
        How many `update` calls make one full training run (from static fields only).
    static: the static part of the config the agent was built with
        (`rlx.config.static_part`), or None. The functions close over it, so `make_train`
        and the Runner refuse a config whose static part differs (`check_config`).
    """

    init: Callable[..., Any]
    update: Callable[..., tuple[Any, Metrics]]
    act: Callable[..., Any]
    policy_params: Callable[[Any], Any]
    num_updates: Callable[[Any], int]
    static: tuple | None = None


def check_config(agent: Agent, cfg: Any) -> None:
    """The agent closes over the static part of the config it was built with: a config
    with other static values would run a program built for the first one. One line
    naming the fields that differ."""
    if agent.static is None:
        return
    from rlx.config import ConfigError, static_part

    built, given = dict(agent.static), dict(static_part(cfg))
    differ = [k for k in sorted(set(built) | set(given)) if not _same(built.get(k), given.get(k))]
    if differ:
        shown = ", ".join(f"{k} = {given.get(k)!r} (built with {built.get(k)!r})" for k in differ[:4])
        raise ConfigError(f"the config's static fields differ from the agent's: {shown}; "
                          "build the agent with this config (make_agent(env, cfg)).")  # fmt: skip


def _same(a: Any, b: Any) -> bool:
    import numpy as np

    try:
        return bool(np.array_equal(a, b)) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else a == b
    except (TypeError, ValueError):
        return a is b
