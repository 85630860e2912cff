"""Probe environments: MDPs of one or two steps whose optimal values are known in closed
form (bsuite's and rejax's probes). An agent that cannot reach them within a few
thousand steps has a bug in its value targets, bootstrapping, discounting or action
handling, and it shows here in seconds rather than after an hour on CartPole.

| `rlx/probe-...`      | steps | observation  | reward                        | V*                     |
|----------------------|-------|--------------|-------------------------------|------------------------|
| `constant`           | 1     | 1            | 1                             | 1                      |
| `observation`        | 1     | ±1 at random | the observation               | obs                    |
| `discount`           | 2     | -1, then +1  | 0, then 1                     | γ at -1, 1 at +1       |
| `action`             | 1     | 1            | 1 for action 1, else 0        | 1                      |
| `action-observation` | 1     | ±1 at random | 1 if action = [obs > 0]       | 1                      |
| `continuous-action`  | 1     | ±1 at random | 1 - (a - obs/2)², a ∈ [-1, 1] | 1, at a = obs/2        |
| `mo-action`          | 1     | 1            | one_hot(action), `[2]`        | one_hot(argmax_j w_j)  |

The optimal (undiscounted) return is 1 everywhere except `observation`, where it is
the observation (±1, mean 0), and `mo-action`, where it is `max_j w_j` under a linear
preference `w`.

What each one catches:
- constant: the value scale and termination. A learner that bootstraps through
  `terminated` finds `V = 1/(1-γ)` instead of 1.
- observation: the value depends on the input (the network sees the observation).
- discount: γ and the bootstrap itself. `V(-1) = γ` only if the target at the first
  step is `γ V(+1)`; ignoring γ gives 1, and a missing bootstrap gives 0.
- action: the policy, or the argmax over actions, picks the rewarded action.
- action-observation: the action has to depend on the observation. A Q-network
  that ignores the action it is indexed by, or a policy that ignores the input,
  averages 1/2.
- continuous-action: a continuous policy moves its mean to the optimum `obs/2`.
- mo-action: a multi-objective learner picks the objective its preference weights
  favour: with weights `w` the scalarised optimum is action `argmax_j w_j`.

The five discrete single-objective probes are one environment, `Probe`, told apart
by `ProbeParams.kind` (a pytree leaf; the env's `name` is the kind it was made with,
its behaviour follows the params it is given). They share one compiled program, so a
test can train an agent on all five at once with `vmap` over `(keys, env_params)`.
Observations are `[1]` float32 and actions `Discrete(2)` in every kind (the action is
ignored where the table says nothing about it). Every observation is ±1, never 0: a
ReLU network with zero biases gets no gradient into its hidden layer from a zero
input, and the probe would then measure the learning rate instead of the learner. No
episode reaches the time limit (`max_steps_in_episode`, default 8), so nothing is
ever truncated.

`q_values(kind, obs, gamma)` and `optimal_value(kind, obs, gamma)` give `Q*` and `V*`.
`ENVS` maps registry names to `factory(**kwargs) -> (env, params)`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlx.envs.core import Box, Discrete, Environment

KINDS = ("constant", "observation", "discount", "action", "action-observation")
CONSTANT, OBSERVATION, DISCOUNT, ACTION, ACTION_OBSERVATION = range(len(KINDS))
# Kinds whose first observation is a random sign; the others start at _FIXED_START.
_RANDOM_START = np.array([False, True, False, False, True])
# -1 for the discount probe's first step, else +1.
_FIXED_START = np.array([1.0, 1.0, -1.0, 1.0, 1.0], np.float32)


def kind_index(kind: str | int) -> int:
    """`"discount"` (or `"rlx/probe-discount"`, or 2) -> 2."""
    if isinstance(kind, (int, np.integer)) and 0 <= int(kind) < len(KINDS):
        return int(kind)
    name = str(kind).removeprefix("rlx/probe-")
    if name not in KINDS:
        raise ValueError(
            f"probe: unknown kind {kind!r}; expected one of {', '.join(KINDS)} (or an index 0..{len(KINDS) - 1})."
        )
    return KINDS.index(name)


@struct.dataclass
class ProbeState:
    """The observation `[1]` and the step count (scalar)."""

    obs: jax.Array  # [1] float32, the current observation
    time: jax.Array  # int32 [], steps taken in this episode


@struct.dataclass
class ProbeParams:
    """Which probe (scalar index into `KINDS`) and the episode cap."""

    kind: jax.Array  # int32 [], index into KINDS
    max_steps_in_episode: int = struct.field(pytree_node=False, default=8)


def _random_sign(key: jax.Array) -> jax.Array:
    return jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(jnp.float32)


class Probe(Environment):
    """The five discrete probes of the module table, one per `ProbeParams.kind`.

    Optimal values (γ the learner's discount): constant V = 1; observation V(o) = o;
    discount V(-1) = γ, V(+1) = 1; action V = 1 (Q(·, 0) = 0, Q(·, 1) = 1);
    action-observation V = 1 (Q(o, a) = 1 if a = [o > 0], else 0). The optimal
    undiscounted return is 1 in every kind but observation, where it is ±1 with mean 0.
    """

    def __init__(self, kind: str | int = "constant", max_steps: int = 8):
        self.kind = kind_index(kind)
        if int(max_steps) < 2:
            raise ValueError(
                f"Probe max_steps = {max_steps} is invalid: it must be >= 2 (the discount probe takes 2 steps)."
            )
        self._params = ProbeParams(kind=jnp.asarray(self.kind, jnp.int32), max_steps_in_episode=int(max_steps))

    @property
    def name(self) -> str:
        return f"rlx/probe-{KINDS[self.kind]}"

    @property
    def default_params(self) -> ProbeParams:
        return self._params

    def observation_space(self, params) -> Box:
        return Box(-1.0, 1.0, (1,))

    def action_space(self, params) -> Discrete:
        return Discrete(2)

    def reset_env(self, key, params):
        random_start = jnp.asarray(_RANDOM_START)[params.kind]
        obs = jnp.where(random_start, _random_sign(key), jnp.asarray(_FIXED_START)[params.kind])[None]
        return obs, ProbeState(obs=obs, time=jnp.zeros((), jnp.int32))

    def step_env(self, key, state, action, params):
        o = state.obs[0]
        first = state.time == 0
        match = (jnp.asarray(action) == (o > 0)).astype(jnp.float32)
        rewards = jnp.stack([
            jnp.float32(1.0),  # constant
            o,  # observation
            jnp.where(first, 0.0, 1.0),  # discount: the reward comes at the second step
            (jnp.asarray(action) == 1).astype(jnp.float32),  # action
            match,  # action-observation
        ])  # fmt: skip
        reward = rewards[params.kind]
        is_discount = params.kind == DISCOUNT
        terminated = ~is_discount | ~first
        # The discount probe moves from -1 to +1; the others keep their (terminal) observation.
        obs = jnp.where(is_discount, jnp.ones_like(state.obs), state.obs)
        return obs, ProbeState(obs=obs, time=state.time + 1), reward, terminated, {}


def q_values(kind: str | int, obs, gamma: float) -> np.ndarray:
    """`Q*(obs, a)` for both actions: `obs: [...]` (or `[..., 1]`) -> `[..., 2]`."""
    k = kind_index(kind)
    o = np.asarray(obs, np.float64)
    if o.ndim and o.shape[-1] == 1:
        o = o[..., 0]
    if k == CONSTANT:
        q = np.ones(o.shape)
    elif k == OBSERVATION:
        q = o
    elif k == DISCOUNT:
        q = np.where(o < 0, gamma, 1.0)
    elif k == ACTION:
        return np.broadcast_to(np.array([0.0, 1.0]), o.shape + (2,)).copy()
    else:
        pos = (o > 0).astype(np.float64)
        return np.stack([1.0 - pos, pos], -1)
    return np.stack([q, q], -1)


def optimal_value(kind: str | int, obs, gamma: float) -> np.ndarray:
    """`V*(obs) = max_a Q*(obs, a)`: `[...]`."""
    return q_values(kind, obs, gamma).max(-1)


# -- the continuous-action probe --------------------------------------------------------


@struct.dataclass
class OneStepParams:
    """Params of `ContinuousProbe` and `MOProbe`: only the (never reached) time limit."""

    max_steps_in_episode: int = struct.field(pytree_node=False, default=8)


class ContinuousProbe(Environment):
    """One step. Observation ±1 at random; action `a ∈ [-1, 1]` (`[1]`, clipped);
    reward `1 - (a - obs/2)²`, in `[-1.25, 1]`. The optimal action is `obs/2`, with
    V* = 1 and optimal return 1; a policy that ignores the observation and plays 0
    gets 0.75, one that plays the opposite sign gets 0."""

    def __init__(self, max_steps: int = 8):
        self._params = OneStepParams(max_steps_in_episode=int(max_steps))

    @property
    def name(self) -> str:
        return "rlx/probe-continuous-action"

    @property
    def default_params(self) -> OneStepParams:
        return self._params

    def observation_space(self, params) -> Box:
        return Box(-1.0, 1.0, (1,))

    def action_space(self, params) -> Box:
        return Box(-1.0, 1.0, (1,))

    def reset_env(self, key, params):
        obs = _random_sign(key)[None]
        return obs, ProbeState(obs=obs, time=jnp.zeros((), jnp.int32))

    def step_env(self, key, state, action, params):
        a = jnp.clip(jnp.reshape(jnp.asarray(action, jnp.float32), (-1,))[0], -1.0, 1.0)
        reward = 1.0 - (a - 0.5 * state.obs[0]) ** 2
        return state.obs, ProbeState(obs=state.obs, time=state.time + 1), reward, jnp.asarray(True), {}


# -- the multi-objective probe ------------------------------------------------------------


class MOProbe(Environment):
    """One step, two objectives. Observation 1; actions `Discrete(2)`; reward
    `one_hot(action) : [2]`. The Pareto front (deterministic policies) is exactly
    `{(1, 0), (0, 1)}` for any γ; under a linear preference `w` the optimal
    scalarised return is `max_j w_j`, from action `argmax_j w_j`, and the optimal
    vector value of the start state is `one_hot(argmax_j w_j)`."""

    reward_dim = 2

    def __init__(self, max_steps: int = 8):
        self._params = OneStepParams(max_steps_in_episode=int(max_steps))
        self.reward_low = np.zeros(2)
        self.reward_high = np.ones(2)
        self.pareto_front_exact = True

    @property
    def name(self) -> str:
        return "rlx/probe-mo-action"

    @property
    def default_params(self) -> OneStepParams:
        return self._params

    @property
    def mo_spec(self):
        from rlx.envs.mo.spec import lattice_spec

        return lattice_spec(ref_point=(0.0, 0.0), divisions=100, gamma=1.0)

    def observation_space(self, params) -> Box:
        return Box(1.0, 1.0, (1,))

    def action_space(self, params) -> Discrete:
        return Discrete(2)

    def reset_env(self, key, params):
        obs = jnp.ones((1,), jnp.float32)
        return obs, ProbeState(obs=obs, time=jnp.zeros((), jnp.int32))

    def step_env(self, key, state, action, params):
        reward = jax.nn.one_hot(action, 2, dtype=jnp.float32)
        return state.obs, ProbeState(obs=state.obs, time=state.time + 1), reward, jnp.asarray(True), {}

    def pareto_front(self, gamma: float) -> np.ndarray:
        """`[2, 2]`: (0, 1) and (1, 0), sorted by the first objective (one step: γ plays no part)."""
        if not (0.0 < gamma <= 1.0):
            raise ValueError(f"pareto_front: gamma must be in (0, 1], got {gamma}.")
        return np.array([[0.0, 1.0], [1.0, 0.0]])


# -- the registry ---------------------------------------------------------------------------


def make_probe(kind: str | int, max_steps: int = 8) -> tuple[Probe, ProbeParams]:
    """A probe env of `kind` (a name in `KINDS` or its index) and its params."""
    env = Probe(kind, max_steps)
    return env, env.default_params


def _continuous(max_steps: int = 8):
    env = ContinuousProbe(max_steps)
    return env, env.default_params


def _mo(max_steps: int = 8):
    env = MOProbe(max_steps)
    return env, env.default_params


ENVS = {
    **{f"rlx/probe-{k}": functools.partial(make_probe, k) for k in KINDS},
    "rlx/probe-continuous-action": _continuous,
    "rlx/probe-mo-action": _mo,
}


def make(name: str, **kwargs):
    """`ENVS[name](**kwargs)`, with an error that lists the probe names."""
    if name not in ENVS:
        raise ValueError(f"probe: unknown environment {name!r}; expected one of {', '.join(ENVS)}.")
    return ENVS[name](**kwargs)


__all__ = [
    "ENVS", "KINDS", "ContinuousProbe", "MOProbe", "OneStepParams", "Probe", "ProbeParams", "ProbeState",
    "kind_index", "make", "make_probe", "optimal_value", "q_values",
]  # fmt: skip
