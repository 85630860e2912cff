"""`to_env(mdp)`: a finite MDP as an rlx `Environment` (envs/core.py), so the same
arrays that tabular DVI solves can drive a deep agent."""

from __future__ import annotations

import warnings

import flax.struct
import jax
import jax.numpy as jnp

from rlx.envs.core import Box, Discrete, Environment
from rlx.envs.tabular.mdp import SparseMDP, TabularMDP, outcomes


@flax.struct.dataclass
class TabularState:
    """The MDP state index and the step count (scalars)."""

    state: jax.Array  # int32 [], the MDP state index
    time: jax.Array  # int32 [], steps taken in this episode


@flax.struct.dataclass
class TabularParams:
    """The MDP and the horizon H (scalar)."""

    mdp: TabularMDP | SparseMDP
    max_steps_in_episode: jax.Array  # int32 [], the horizon H


class TabularEnv(Environment):
    """Observation: one-hot float32 `[S]` of the state. Action: `Discrete(A)`.
    `info["state"]` holds the integer state. Rewards are sampled jointly with the next
    state from the MDP's outcomes; entering a terminal state terminates."""

    def __init__(self, num_states: int, num_actions: int, params: TabularParams, name: str = "tabular"):
        self.num_states, self.num_actions = num_states, num_actions
        self._params, self._name = params, name

    @property
    def name(self) -> str:
        return self._name

    @property
    def default_params(self) -> TabularParams:
        return self._params

    def _obs(self, s):
        return jax.nn.one_hot(s, self.num_states, dtype=jnp.float32)

    def reset_env(self, key, params):
        s = jax.random.categorical(key, jnp.log(params.mdp.initial)).astype(jnp.int32)
        return self._obs(s), TabularState(state=s, time=jnp.zeros((), jnp.int32))

    def step_env(self, key, state, action, params):
        succ, probs, rewards = outcomes(params.mdp)
        n = jax.random.categorical(key, jnp.log(probs[state.state, action]))
        s2 = succ[state.state, action, n].astype(jnp.int32)
        reward = rewards[state.state, action, n]
        terminated = params.mdp.terminal[s2]
        next_state = TabularState(state=s2, time=state.time + 1)
        return self._obs(s2), next_state, reward, terminated, {"state": s2}

    def observation_space(self, params):
        return Box(0.0, 1.0, (self.num_states,))

    def action_space(self, params):
        return Discrete(self.num_actions)


def to_env(mdp: TabularMDP | SparseMDP, max_steps: int = 100, name: str = "tabular"):
    """Wrap one (unbatched) MDP as an rlx env: returns `(env, params)`, a `TabularEnv`
    (an `rlx.envs.Environment`) and its params."""
    params = TabularParams(mdp=mdp, max_steps_in_episode=jnp.asarray(max_steps, jnp.int32))
    return TabularEnv(mdp.num_states, mdp.num_actions, params, name), params


def to_gymnax(mdp: TabularMDP | SparseMDP, max_steps: int = 100, name: str = "tabular"):
    """Deprecated: the old name of `to_env`, which it calls (it never returned a gymnax env)."""
    warnings.warn("rlx.envs.tabular.to_gymnax is deprecated: it returns an rlx env, not a gymnax one; call "
                  "rlx.envs.tabular.to_env (the same arguments and result).", DeprecationWarning, stacklevel=2)
    return to_env(mdp, max_steps, name)
