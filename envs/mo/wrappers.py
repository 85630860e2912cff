"""Wrappers for vector-reward envs: scalarisation, reward scaling, episode statistics.

Each wrapper takes an env with `reward_dim = d` (rewards `[d]`) and is itself an
env with the same `reset(key, params)` / `step(key, state, action, params)` API.
Wrapper settings that a population may vary (weights, utopia point, gamma) live in
the wrapper's params pytree, so `vmap` over them needs no recompilation:
`params = wrapper.default_params` gives the constructor's values, and
`params.replace(weights=...)` changes them. Attribute reads that the wrapper does
not define (`mo_spec`, `pareto_front`, `reward_low`, ...) go to the wrapped env.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlx.pareto import check_weights


class _Wrapper:
    def __init__(self, env, needs_vector: bool = True):
        if needs_vector and not getattr(env, "reward_dim", None):
            raise ValueError(
                f"{type(self).__name__} needs a vector-reward env (reward_dim = d), "
                f"got {getattr(env, 'name', env)!r} with reward_dim={getattr(env, 'reward_dim', None)}."
            )
        self._env = env

    def __getattr__(self, attr):  # only called for attributes not found on the wrapper
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self._env, attr)

    @property
    def unwrapped(self):
        return getattr(self._env, "unwrapped", self._env)

    @property
    def name(self) -> str:
        return self._env.name

    def observation_space(self, params):
        return self._env.observation_space(params.env)

    def action_space(self, params):
        return self._env.action_space(params.env)

    def reset(self, key, params=None):
        params = self.default_params if params is None else params
        return self._env.reset(key, params.env)


# ---------------------------------------------------------------------------
# Scalarisation
# ---------------------------------------------------------------------------


@struct.dataclass
class LinearParams:
    """The inner env's params and the preference weights `[d]`."""

    env: Any
    weights: jax.Array  # [d]


class LinearScalarization(_Wrapper):
    """Scalar reward `w . r`; the vector `r: [d]` is kept in `info["vector_reward"]`.

    `weights: [d]` must lie on the simplex (checked here; pass traced weights in the
    params to vmap a population over preferences).
    """

    reward_dim = None

    def __init__(self, env, weights):
        super().__init__(env)
        w = np.asarray(check_weights(np.asarray(weights, np.float64), env.reward_dim))
        if w.shape != (env.reward_dim,):
            raise ValueError(
                f"LinearScalarization: one weight vector of shape ({env.reward_dim},) expected, got {w.shape}."
            )
        self._weights = jnp.asarray(w, jnp.float32)

    @property
    def default_params(self) -> LinearParams:
        return LinearParams(env=self._env.default_params, weights=self._weights)

    def step(self, key, state, action, params=None):
        params = self.default_params if params is None else params
        obs, state, vec, terminated, truncated, info = self._env.step(key, state, action, params.env)
        reward = jnp.dot(params.weights.astype(vec.dtype), vec)
        return obs, state, reward, terminated, truncated, {**info, "vector_reward": vec}


@struct.dataclass
class ChebyshevParams:
    """The inner env's params, the weights `[d]` and the utopia point `[d]`."""

    env: Any
    weights: jax.Array  # [d]
    utopia: jax.Array  # [d]


class ChebyshevScalarization(_Wrapper):
    """Scalar reward `-max_j w_j |z_j - r_j|` for a utopia point `z: [d]`;
    the vector reward stays in `info["vector_reward"]`.

    Applied per step, as in MORL-Baselines' `tchebicheff`. Note that a sum of
    per-step Chebyshev values is not the Chebyshev value of the return (the max
    does not commute with the sum), so this is a heuristic for non-linear
    preferences, not an exact utility of the episode.
    """

    reward_dim = None

    def __init__(self, env, weights, utopia):
        super().__init__(env)
        d = env.reward_dim
        w = np.asarray(check_weights(np.asarray(weights, np.float64), d)).reshape(-1)
        z = np.asarray(utopia, np.float64)
        if w.shape != (d,) or z.shape != (d,):
            raise ValueError(
                f"ChebyshevScalarization: weights and utopia must both have shape ({d},), "
                f"got {w.shape} and {z.shape}."
            )
        if not np.all(np.isfinite(z)):
            raise ValueError("ChebyshevScalarization: the utopia point must be finite.")
        self._weights = jnp.asarray(w, jnp.float32)
        self._utopia = jnp.asarray(z, jnp.float32)

    @property
    def default_params(self) -> ChebyshevParams:
        return ChebyshevParams(env=self._env.default_params, weights=self._weights, utopia=self._utopia)

    def step(self, key, state, action, params=None):
        params = self.default_params if params is None else params
        obs, state, vec, terminated, truncated, info = self._env.step(key, state, action, params.env)
        reward = -jnp.max(params.weights * jnp.abs(params.utopia - vec))
        return obs, state, reward, terminated, truncated, {**info, "vector_reward": vec}


# ---------------------------------------------------------------------------
# Per-objective reward normalisation
# ---------------------------------------------------------------------------


@struct.dataclass
class ScaleParams:
    """The inner env's params and the per-objective reward scale `[d]`."""

    env: Any
    scale: jax.Array  # [d], > 0


class NormalizeVectorReward(_Wrapper):
    """Divide each objective of the reward by a fixed positive `scale: [d]`, so the
    objectives have comparable magnitudes; the raw vector is in `info["raw_vector_reward"]`.

    With `scale="bounds"` it is `max(|reward_low|, |reward_high|)` from the env's
    declared reward bounds (1 where both are 0), which maps every reward into
    [-1, 1] and keeps its sign. The scale is fixed on purpose: running
    return statistics belong to the agent's state, shared by its whole batch of
    envs (see `rlx.running_stats`), not to each env copy.
    """

    def __init__(self, env, scale):
        super().__init__(env)
        d = env.reward_dim
        if isinstance(scale, str):
            if scale != "bounds":
                raise ValueError(f"NormalizeVectorReward: scale must be an array or 'bounds', got {scale!r}.")
            bound = np.maximum(np.abs(np.asarray(env.reward_low)), np.abs(np.asarray(env.reward_high)))
            scale = np.where(bound > 0, bound, 1.0)
        scale = np.asarray(scale, np.float64)
        if scale.shape != (d,) or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError(
                f"NormalizeVectorReward: scale must be finite and positive with shape ({d},), got {scale}."
            )
        self._scale = jnp.asarray(scale, jnp.float32)

    @property
    def reward_dim(self):
        return self._env.reward_dim

    @property
    def default_params(self) -> ScaleParams:
        return ScaleParams(env=self._env.default_params, scale=self._scale)

    def step(self, key, state, action, params=None):
        params = self.default_params if params is None else params
        obs, state, vec, terminated, truncated, info = self._env.step(key, state, action, params.env)
        return obs, state, vec / params.scale, terminated, truncated, {**info, "raw_vector_reward": vec}


# ---------------------------------------------------------------------------
# Vector episode statistics
# ---------------------------------------------------------------------------


@struct.dataclass
class StatsParams:
    """The inner env's params and the evaluation discount (scalar)."""

    env: Any
    gamma: jax.Array  # scalar evaluation discount


@struct.dataclass
class VectorStatsState:
    """Running vector returns `[d]` (undiscounted and discounted) of the episode in progress
    and of the last finished one."""

    env_state: Any
    vector_return: jax.Array  # [d] undiscounted return so far
    discounted_return: jax.Array  # [d] sum_t gamma^t r_t so far
    discount: jax.Array  # gamma^t for the next reward
    length: jax.Array  # int32 steps so far
    # The last finished episode (zeros before any finished):
    returned_vector_return: jax.Array
    returned_discounted_return: jax.Array
    returned_length: jax.Array


class VectorEpisodeStatistics(_Wrapper):
    """Track each episode's undiscounted and discounted vector returns.

    `info` gains, every step:
    - `returned_episode`: bool, an episode finished on this step;
    - `returned_episode_vector_return: [d]` and
      `returned_episode_discounted_vector_return: [d]`
      (`sum_t gamma^t r_t`, t from 0), and `returned_episode_length`:
      the most recent finished episode (zeros before the first one).
    If the wrapped env is scalarised, the vector is read from `info["vector_reward"]`.
    `gamma` is required: use the env's `mo_spec.gamma` for evaluation.
    """

    def __init__(self, env, gamma: float):
        # A scalarised env is fine here: its vector reward is in info["vector_reward"].
        super().__init__(env, needs_vector=False)
        self._dim = env.reward_dim or getattr(self.unwrapped, "reward_dim", None)
        if not self._dim:
            raise ValueError(
                f"VectorEpisodeStatistics needs a vector-reward env, got {getattr(env, 'name', env)!r}."
            )
        if not (0.0 < gamma <= 1.0):
            raise ValueError(f"VectorEpisodeStatistics: gamma must be in (0, 1], got {gamma}.")
        self._gamma = float(gamma)

    @property
    def reward_dim(self):
        return self._env.reward_dim

    @property
    def default_params(self) -> StatsParams:
        return StatsParams(env=self._env.default_params, gamma=jnp.asarray(self._gamma, jnp.float32))

    def reset(self, key, params=None):
        params = self.default_params if params is None else params
        obs, env_state = self._env.reset(key, params.env)
        zeros = jnp.zeros((self._dim,), jnp.float32)
        zero = jnp.asarray(0, jnp.int32)
        state = VectorStatsState(
            env_state, zeros, zeros, jnp.asarray(1.0, jnp.float32), zero, zeros, zeros, zero
        )
        return obs, state

    def step(self, key, state, action, params=None):
        params = self.default_params if params is None else params
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params.env
        )
        vec = info["vector_reward"] if "vector_reward" in info else reward
        vec = jnp.asarray(vec, jnp.float32)
        vector_return = state.vector_return + vec
        discounted = state.discounted_return + state.discount * vec
        length = state.length + 1
        done = terminated | truncated
        new = VectorStatsState(
            env_state=env_state,
            vector_return=jnp.where(done, 0.0, vector_return),
            discounted_return=jnp.where(done, 0.0, discounted),
            discount=jnp.where(done, 1.0, state.discount * params.gamma),
            length=jnp.where(done, 0, length),
            returned_vector_return=jnp.where(done, vector_return, state.returned_vector_return),
            returned_discounted_return=jnp.where(done, discounted, state.returned_discounted_return),
            returned_length=jnp.where(done, length, state.returned_length),
        )
        info = {
            **info,
            "returned_episode": done,
            "returned_episode_vector_return": new.returned_vector_return,
            "returned_episode_discounted_vector_return": new.returned_discounted_return,
            "returned_episode_length": new.returned_length,
        }
        return obs, new, reward, terminated, truncated, info
