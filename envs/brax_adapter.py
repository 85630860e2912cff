"""brax environments on rlx's interface.

The raw brax env (no brax wrappers) is stepped, and this adapter adds the time
limit, auto-reset and the final observation. Resetting matters for correctness
too: brax's generalized backend returns NaN observations if a finished episode
keeps being stepped.

`reset_mode="fresh"` draws a new random initial state at every episode start;
`"cached"` restores each env's first initial state, as brax's own training
wrapper does (cheaper, but every episode of one env starts identically).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from rlx.envs.core import Box, select_tree

BACKENDS = ("generalized", "positional", "spring", "mjx")
RESET_MODES = ("fresh", "cached")


@struct.dataclass
class BraxEnvState:
    """A brax state, the step count in the episode (scalar) and the cached first state."""

    inner: Any  # brax.envs.base.State
    time: jax.Array
    first: Any  # the cached initial brax State (unused with reset_mode="fresh")


class BraxEnv:
    """A brax env on rlx's interface: auto-reset inside `step`, truncation at
    `episode_length`, the last observation in `info["final_obs"]`; no env params."""

    reward_dim = None

    def __init__(self, env: Any, env_id: str, backend: str, episode_length: int, reset_mode: str):
        self._env = env
        self.env_id = env_id
        self.backend = backend
        self.episode_length = episode_length
        self.reset_mode = reset_mode
        self._obs_shape: tuple[int, ...] | None = None

    @property
    def name(self) -> str:
        return f"brax/{self.env_id}"

    @property
    def default_params(self) -> None:
        return None

    @property
    def brax_env(self) -> Any:
        return self._env

    def reset(self, key: jax.Array, params: Any = None):
        s = self._env.reset(key)
        first = s if self.reset_mode == "cached" else None
        return s.obs, BraxEnvState(s, jnp.zeros((), jnp.int32), first)

    def reward(self, s: Any, action: jax.Array) -> tuple[jax.Array, dict]:
        """The reward of brax state `s` (reached by `action`) and extra `info` entries;
        read before the auto-reset replaces the finished episode's metrics."""
        return s.reward, {}

    def step(self, key: jax.Array, state: BraxEnvState, action: jax.Array, params: Any = None):
        s = self._env.step(state.inner, action)
        reward, extra = self.reward(s, action)
        time = state.time + 1
        terminated = s.done > 0.5
        truncated = (time >= self.episode_length) & ~terminated
        done = terminated | truncated
        fresh = state.first if self.reset_mode == "cached" else self._env.reset(key)
        new = select_tree(done, fresh, s)
        time = jnp.where(done, 0, time)
        info = {"final_obs": s.obs, **extra}
        return new.obs, BraxEnvState(new, time, state.first), reward, terminated, truncated, info

    def observation_space(self, params: Any = None) -> Box:
        # Not brax's `observation_size`: it runs a reset op by op, which on CPU is a few
        # seconds of small compiles (5.5 s for halfcheetah, spring) before any training
        # compiles. The shape needs only an abstract trace.
        if self._obs_shape is None:
            obs = jax.eval_shape(lambda key: self._env.reset(key).obs, jax.random.key(0))
            self._obs_shape = tuple(int(n) for n in obs.shape)
        return Box(-float("inf"), float("inf"), self._obs_shape)

    def action_space(self, params: Any = None) -> Box:
        return Box(-1.0, 1.0, (int(self._env.action_size),))


def make_brax(
    env_id: str, backend: str = "generalized", episode_length: int = 1000, reset_mode: str = "fresh", **kwargs
) -> tuple[BraxEnv, None]:
    """`brax/ENV_ID`: a brax env on one of `BACKENDS`; `reset_mode` "fresh" resets from a new
    key, "cached" from the first state. Other keyword arguments go to brax."""
    if backend not in BACKENDS:
        raise ValueError(f"brax backend {backend!r} is invalid: accepted values are {', '.join(BACKENDS)}.")
    if reset_mode not in RESET_MODES:
        raise ValueError(f"reset_mode {reset_mode!r} is invalid: accepted values are {', '.join(RESET_MODES)}.")
    if episode_length < 1:
        raise ValueError(f"episode_length = {episode_length} is invalid: it must be >= 1.")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # brax warns that its env collection is unmaintained
        from brax import envs as brax_envs

        env = brax_envs.get_environment(env_id, backend=backend, **kwargs)
    return BraxEnv(env, env_id, backend, episode_length, reset_mode), None
