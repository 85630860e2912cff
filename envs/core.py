"""The one functional environment interface every rlx agent talks to.

An environment is an object with no mutable state. All state lives in pytrees:

    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

`step` auto-resets: when the episode ends (terminated or truncated) the returned
`obs` and `state` already belong to the next episode, and `info["final_obs"]` holds
the last observation of the finished one, so a truncated step can be bootstrapped
from the value of the true final state. `truncated` is never set together with
`terminated`: a step that is both counts as terminated (no bootstrap).

Rewards are scalars, or vectors of shape `(reward_dim,)` for multi-objective envs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Discrete:
    """Actions `0 .. n-1`, as int32 scalars."""

    n: int
    shape: tuple[int, ...] = ()
    dtype: Any = jnp.int32

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, self.shape, 0, self.n, dtype=self.dtype)

    def contains(self, x) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.all((x >= 0) & (x < self.n))


@dataclasses.dataclass(frozen=True)
class Box:
    """A box `[low, high]` of shape `shape`. `low`/`high` are floats or tuples (hashable)."""

    low: Any
    high: Any
    shape: tuple[int, ...]
    dtype: Any = jnp.float32

    def sample(self, key: jax.Array) -> jax.Array:
        low = jnp.broadcast_to(jnp.asarray(self.low, self.dtype), self.shape)
        high = jnp.broadcast_to(jnp.asarray(self.high, self.dtype), self.shape)
        # Unbounded boxes sample a standard normal, bounded ones uniformly.
        finite = jnp.isfinite(low) & jnp.isfinite(high)
        u = jax.random.uniform(key, self.shape, self.dtype)
        n = jax.random.normal(key, self.shape, self.dtype)
        return jnp.where(finite, low + u * (high - low), n)

    def contains(self, x) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.all((x >= jnp.asarray(self.low)) & (x <= jnp.asarray(self.high)))


def as_tuple(x) -> Any:
    """Make array bounds hashable so spaces can be static."""
    x = np.asarray(x)
    return float(x) if x.ndim == 0 else tuple(float(v) for v in x.reshape(-1))


class SuiteEnv:
    """Base class of the adapters of other JAX suites (Craftax, XLand-MiniGrid): the
    upstream env, its id within `family`, and its default params. Subclasses write
    `reset`, `step` and the spaces."""

    family = ""
    #: `None` for scalar rewards; `d` for vector rewards of shape `(d,)`.
    reward_dim: int | None = None

    def __init__(self, env: Any, env_id: str, params: Any):
        self._env = env
        self.env_id = env_id
        self._params = params

    @property
    def name(self) -> str:
        return f"{self.family}/{self.env_id}"

    @property
    def default_params(self) -> Any:
        return self._params


class Environment:
    """Base class for rlx's own JAX environments.

    Subclasses implement `reset_env`, `step_env` (no auto-reset), the spaces and
    `default_params`; this class adds auto-reset, time-limit truncation and the
    final observation. Their state must carry an integer `time` field, and their
    params a `max_steps_in_episode` field, unless they override `is_truncated`.
    """

    #: `None` for scalar rewards; `d` for vector rewards of shape `(d,)`.
    reward_dim: int | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def default_params(self) -> Any:
        raise NotImplementedError

    def reset_env(self, key: jax.Array, params: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def step_env(self, key: jax.Array, state: Any, action: Any, params: Any):
        """Returns `(obs, state, reward, terminated, info)` with no auto-reset."""
        raise NotImplementedError

    def is_truncated(self, state: Any, params: Any) -> jax.Array:
        return state.time >= params.max_steps_in_episode

    def observation_space(self, params: Any) -> Box:
        raise NotImplementedError

    def action_space(self, params: Any) -> Discrete | Box:
        raise NotImplementedError

    def reset(self, key: jax.Array, params: Any = None) -> tuple[Any, Any]:
        params = self.default_params if params is None else params
        return self.reset_env(key, params)

    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None):
        params = self.default_params if params is None else params
        key_step, key_reset = jax.random.split(key)
        obs, next_state, reward, terminated, info = self.step_env(key_step, state, action, params)
        terminated = jnp.asarray(terminated, jnp.bool_)
        truncated = jnp.logical_and(self.is_truncated(next_state, params), ~terminated)
        done = terminated | truncated
        reset_obs, reset_state = self.reset_env(key_reset, params)
        state = select_tree(done, reset_state, next_state)
        new_obs = select_tree(done, reset_obs, obs)
        info = {**info, "final_obs": obs}
        return new_obs, state, reward, terminated, truncated, info


def select_tree(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """`where(pred, a, b)` leaf by leaf for one (unbatched) env; `pred` is a scalar."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)
