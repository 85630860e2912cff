"""Wrappers over rlx's env interface. Each wraps one (unbatched) env; agents vmap them.

Observation normalisation is not a wrapper: its statistics must be shared across
the env batch and travel with the policy, so it lives in the agent
(`rlx.running_stats`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlx.envs.core import Box, select_tree


class Wrapper:
    """Delegates everything it does not override to the wrapped env."""

    def __init__(self, env: Any):
        self.env = env

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)

    def reset(self, key, params=None):
        return self.env.reset(key, params)

    def step(self, key, state, action, params=None):
        return self.env.step(key, state, action, params)

    def observation_space(self, params=None):
        return self.env.observation_space(params)

    def action_space(self, params=None):
        return self.env.action_space(params)


@struct.dataclass
class EpisodeStatsState:
    """The inner state and episode statistics: running and last return (scalars, or `[d]` for
    vector rewards), lengths, and the number of finished episodes."""

    inner: Any
    running_return: jax.Array  # [] or [d]
    running_length: jax.Array  # []
    last_return: jax.Array  # return of the last finished episode
    last_length: jax.Array
    finished: jax.Array  # number of finished episodes (int32)


class EpisodeStats(Wrapper):
    """Tracks undiscounted episode returns and lengths.

    `finished == 0` means no episode has ended yet, which is different from an
    episode that ended with return 0. Adds to `info`: `episode_return`,
    `episode_length` (of the episode that just ended, else of the last one) and
    `episode_done`.
    """

    def _zero_return(self, params):
        d = getattr(self.env, "reward_dim", None)
        return jnp.zeros((d,) if d else (), jnp.float32)

    def reset(self, key, params=None):
        obs, inner = self.env.reset(key, params)
        z = self._zero_return(params)
        zi = jnp.zeros((), jnp.int32)
        return obs, EpisodeStatsState(inner, z, zi, z, zi, zi)

    def step(self, key, state, action, params=None):
        obs, inner, reward, terminated, truncated, info = self.env.step(key, state.inner, action, params)
        done = terminated | truncated
        ret = state.running_return + reward
        length = state.running_length + 1
        new = EpisodeStatsState(
            inner,
            running_return=jnp.where(done, jnp.zeros_like(ret), ret),
            running_length=jnp.where(done, 0, length),
            last_return=jnp.where(done, ret, state.last_return),
            last_length=jnp.where(done, length, state.last_length),
            finished=state.finished + done.astype(jnp.int32),
        )
        info = {**info, "episode_return": new.last_return, "episode_length": new.last_length, "episode_done": done}
        return obs, new, reward, terminated, truncated, info


def episode_summary(stats: EpisodeStatsState) -> tuple[jax.Array, jax.Array]:
    """Over a batch of envs `[B]`: (mean last-finished return over envs that finished
    at least one episode, NaN if none has; total finished episodes)."""
    has = stats.finished > 0
    mask = has.reshape(has.shape + (1,) * (stats.last_return.ndim - has.ndim)).astype(jnp.float32)
    n = mask.sum(0)
    mean = jnp.where(n > 0, (stats.last_return * mask).sum(0) / jnp.maximum(n, 1), jnp.nan)
    return mean, stats.finished.sum()


class ClipAction(Wrapper):
    """Clips continuous actions to the action space's bounds."""

    def step(self, key, state, action, params=None):
        space = self.env.action_space(params)
        action = jnp.clip(action, jnp.asarray(space.low), jnp.asarray(space.high))
        return self.env.step(key, state, action, params)


class RescaleAction(Wrapper):
    """The agent acts in `[-1, 1]^D`; the env receives the affine image in `[low, high]`."""

    def action_space(self, params=None):
        space = self.env.action_space(params)
        return Box(-1.0, 1.0, space.shape)

    def step(self, key, state, action, params=None):
        space = self.env.action_space(params)
        low, high = jnp.asarray(space.low), jnp.asarray(space.high)
        action = low + (jnp.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)
        return self.env.step(key, state, action, params)


@struct.dataclass
class TimeLimitState:
    """The inner state and the step count in the episode (scalar)."""

    inner: Any
    time: jax.Array


class TimeLimit(Wrapper):
    """Truncates episodes after `max_steps` steps (truncation, not termination)."""

    def __init__(self, env: Any, max_steps: int):
        if max_steps < 1:
            raise ValueError(f"TimeLimit.max_steps = {max_steps} is invalid: it must be >= 1.")
        super().__init__(env)
        self.max_steps = int(max_steps)

    def reset(self, key, params=None):
        obs, inner = self.env.reset(key, params)
        return obs, TimeLimitState(inner, jnp.zeros((), jnp.int32))

    def step(self, key, state, action, params=None):
        key_step, key_reset = jax.random.split(key)
        obs, inner, reward, terminated, truncated, info = self.env.step(key_step, state.inner, action, params)
        time = state.time + 1
        cut = (time >= self.max_steps) & ~(terminated | truncated)
        # The inner env did not end the episode, so we reset it ourselves.
        reset_obs, reset_inner = self.env.reset(key_reset, params)
        inner = select_tree(cut, reset_inner, inner)
        info = {**info, "final_obs": jnp.where(cut, obs, info["final_obs"])}
        obs = jnp.where(cut, reset_obs, obs)
        truncated = truncated | cut
        time = jnp.where(terminated | truncated, 0, time)
        return obs, TimeLimitState(inner, time), reward, terminated, truncated, info


def is_discrete(space: Any) -> bool:
    """Whether `space` is a `Discrete` space."""
    return type(space).__name__ == "Discrete"


def flat_dim(space: Any) -> int:
    """The number of scalars in one element of `space` (1 for a scalar space)."""
    return int(np.prod(space.shape)) if space.shape else 1
