"""gymnax 1.x environments on rlx's interface.

gymnax 1.x already auto-resets inside `step` and returns six values with the final
observation in `info["final_observation"]`; the adapter renames it to
`info["final_obs"]`, casts observations to float32, makes `truncated` exclusive of
`terminated`, and turns gymnax spaces into ours.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from rlx.envs.core import Box, Discrete, as_tuple


def convert_space(space: Any) -> Discrete | Box:
    """A gymnax Discrete or Box space as rlx's."""
    kind = type(space).__name__
    if kind == "Discrete":
        return Discrete(int(space.n))
    if kind == "Box":
        return Box(as_tuple(space.low), as_tuple(space.high), tuple(space.shape))
    raise TypeError(f"gymnax space {kind} is not supported (Discrete and Box are)")


class GymnaxEnv:
    """Wraps a gymnax environment object."""

    reward_dim = None

    def __init__(self, env: Any, env_id: str):
        self._env = env
        self.env_id = env_id

    @property
    def name(self) -> str:
        return f"gymnax/{self.env_id}"

    @property
    def default_params(self) -> Any:
        return self._env.default_params

    def reset(self, key: jax.Array, params: Any = None):
        params = self.default_params if params is None else params
        obs, state = self._env.reset(key, params)
        return obs.astype(jnp.float32), state

    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None):
        params = self.default_params if params is None else params
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        terminated = jnp.asarray(terminated, jnp.bool_)
        truncated = jnp.asarray(truncated, jnp.bool_) & ~terminated
        info = {"final_obs": info["final_observation"].astype(jnp.float32)}
        return obs.astype(jnp.float32), state, jnp.asarray(reward, jnp.float32), terminated, truncated, info

    def observation_space(self, params: Any = None) -> Box:
        space = convert_space(self._env.observation_space(params or self.default_params))
        if isinstance(space, Discrete):  # e.g. bandits: we hand out float observations
            return Box(0.0, float(space.n - 1), ())
        return space

    def action_space(self, params: Any = None) -> Discrete | Box:
        return convert_space(self._env.action_space(params or self.default_params))


def make_gymnax(env_id: str, **kwargs) -> tuple[GymnaxEnv, Any]:
    """`gymnax/ENV_ID`: the gymnax env and its default params; keyword arguments go to
    `gymnax.make`."""
    from rlx.lazy import defer_import

    # gymnax's __init__ imports every env, and its misc/pong.py imports seaborn and
    # matplotlib.pyplot at module level for rendering only: seconds of every run's
    # start (benchmarks/bench_startup.py). They load when first used instead.
    for heavy in ("seaborn", "matplotlib.pyplot"):
        defer_import(heavy)
    import gymnax

    env, params = gymnax.make(env_id, **kwargs)
    return GymnaxEnv(env, env_id), params
