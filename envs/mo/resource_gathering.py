"""Resource Gathering (Barrett & Narayanan 2008), as in MO-Gymnasium.

A 5 x 5 grid. The agent starts at home (4, 2), may pick up gold at (0, 2) and a
gem at (1, 4), and must bring them home. Two enemy cells, (1, 2) and (0, 3), kill
the agent with probability `kill_prob` (0.1) on every entry. Actions: 0 up,
1 down, 2 left, 3 right; moves off the grid leave the agent in place.
Reward: `[-1 if killed, gold delivered, gem delivered]`, paid when the episode
ends (death, or entering home). Observation: `[row, col, has_gold, has_gem]`.
Episodes are capped at 100 steps.

As in MO-Gymnasium, *being* on the home cell after a step ends the episode, so a
first move into the bottom wall ends it at once with reward 0.

The front here is approximate (`pareto_front_exact = False`): it is the
non-dominated set of the expected discounted returns of a handful of hand-derived
routes (`ROUTES`). Each is the return of a concrete policy, so it is a lower
bound of the true front. It differs from MO-Gymnasium's shipped front, which pays
a reward collected on step `t` as `gamma^t` (DST pays it as `gamma^(t-1)`, and so
do we everywhere) and misses the enemy-free route to both resources, which at
gamma = 0.99 dominates the two both-resource routes it lists.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlx.pareto import pareto_filter
from rlx.envs.core import Box, Discrete, Environment
from rlx.envs.mo.spec import MOSpec, lattice_spec
from rlx.envs.registry import forwards_kwargs

SIZE = 5
HOME = (4, 2)
GOLD = (0, 2)
GEM = (1, 4)
ENEMIES = ((1, 2), (0, 3))
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int32)
U, D, L, R = 0, 1, 2, 3

#: Hand-derived routes (open-loop action sequences from home back home).
ROUTES = {
    "gem, no enemy (10 steps)": (U, U, R, U, R, L, D, L, D, D),
    "gold, no enemy (12 steps)": (U, U, L, U, U, R, L, D, D, R, D, D),
    "gold, through enemy (1,2) twice (8 steps)": (U, U, U, U, D, D, D, D),
    "gold, through enemy (1,2) once (10 steps)": (U, U, L, U, U, R, D, D, D, D),
    "gem then gold, through both enemies (12 steps)": (U, U, R, U, R, U, L, L, D, D, D, D),
    "gem then gold, through enemy (0,3) (14 steps)": (U, U, R, U, R, U, L, L, L, D, D, R, D, D),
    "gold then gem, no enemy (18 steps)": (
        U, U, L, U, U, R, L, D, D, R, R, U, R, L, D, L, D, D,
    ),
}  # fmt: skip


def route_return(actions, gamma: float, kill_prob: float) -> np.ndarray:
    """Expected discounted return `[3]` of an open-loop action sequence (float64).

    Death is the only randomness: entering an enemy cell at step `t` with survival
    probability `s` adds `-kill_prob * s * gamma^(t-1)` to the first objective.
    Raises if the route does not end at home.
    """
    pos, gold, gem, alive, ret = np.array(HOME), 0.0, 0.0, 1.0, np.zeros(3)
    for t, a in enumerate(actions, start=1):
        nxt = pos + MOVES[a]
        if np.all((nxt >= 0) & (nxt < SIZE)):
            pos = nxt
        cell = tuple(int(v) for v in pos)
        if cell == GOLD:
            gold = 1.0
        elif cell == GEM:
            gem = 1.0
        elif cell in ENEMIES:
            ret[0] -= kill_prob * alive * gamma ** (t - 1)
            alive *= 1.0 - kill_prob
        elif cell == HOME:
            ret[1:] += alive * gamma ** (t - 1) * np.array([gold, gem])
            if t != len(actions):
                raise ValueError(f"route reaches home early, at step {t} of {len(actions)}.")
            return ret
    raise ValueError("route does not end at home.")


@struct.dataclass
class RGState:
    """Resource Gathering: position `[2]`, whether gold and gem are carried, step count
    (scalars)."""

    pos: jax.Array  # [2] int32
    has_gold: jax.Array  # bool
    has_gem: jax.Array  # bool
    time: jax.Array  # int32


@struct.dataclass
class RGParams:
    """Resource Gathering's params: the episode cap and the enemy's kill probability."""

    max_steps_in_episode: int = 100
    kill_prob: float = 0.1


class ResourceGathering(Environment):
    """Resource Gathering with a 3-dimensional reward `[death, gold, gem]`."""

    reward_dim = 3

    def __init__(self):
        self.reward_low = np.array([-1.0, 0.0, 0.0])
        self.reward_high = np.array([0.0, 1.0, 1.0])
        #: HV reference point (-1, -1, -1), below every attainable expected return;
        #: EU over the 231-point Das-Dennis lattice (divisions 20); gamma 0.99.
        self.mo_spec: MOSpec = lattice_spec(ref_point=(-1.0, -1.0, -1.0), divisions=20, gamma=0.99)
        self.pareto_front_exact = False

    @property
    def default_params(self) -> RGParams:
        return RGParams()

    def observation_space(self, params) -> Box:
        return Box(0.0, float(SIZE - 1), (4,), jnp.float32)

    def action_space(self, params) -> Discrete:
        return Discrete(4)

    def reset_env(self, key, params):
        state = RGState(
            pos=jnp.asarray(HOME, jnp.int32),
            has_gold=jnp.asarray(False),
            has_gem=jnp.asarray(False),
            time=jnp.asarray(0, jnp.int32),
        )
        return self._obs(state), state

    def step_env(self, key, state, action, params):
        nxt = state.pos + jnp.asarray(MOVES)[action]
        inside = jnp.all((nxt >= 0) & (nxt < SIZE))
        pos = jnp.where(inside, nxt, state.pos)

        def at(cell):
            return jnp.all(pos == jnp.asarray(cell))

        has_gold = state.has_gold | at(GOLD)
        has_gem = state.has_gem | at(GEM)
        on_enemy = at(ENEMIES[0]) | at(ENEMIES[1])
        killed = on_enemy & (jax.random.uniform(key) < params.kill_prob)
        home = at(HOME)
        delivered = home.astype(jnp.float32)
        reward = jnp.stack(
            [
                -killed.astype(jnp.float32),
                delivered * has_gold.astype(jnp.float32),
                delivered * has_gem.astype(jnp.float32),
            ]
        )
        state = RGState(pos=pos, has_gold=has_gold, has_gem=has_gem, time=state.time + 1)
        return self._obs(state), state, reward, killed | home, {}

    def _obs(self, state):
        return jnp.concatenate(
            [state.pos, jnp.stack([state.has_gold, state.has_gem]).astype(jnp.int32)]
        ).astype(jnp.float32)

    def pareto_front(self, gamma: float, params: RGParams | None = None) -> np.ndarray:
        """Approximate discounted front `[m, 3]`: the non-dominated expected returns
        of `ROUTES` under `params.kill_prob` (default 0.1). A lower bound only."""
        if not (0.0 < gamma <= 1.0):
            raise ValueError(f"pareto_front: gamma must be in (0, 1], got {gamma}.")
        kill_prob = float((params or self.default_params).kill_prob)
        points = np.stack([route_return(r, gamma, kill_prob) for r in ROUTES.values()])
        return pareto_filter(points)


@forwards_kwargs(RGParams)
def make_resource_gathering(**params) -> tuple[ResourceGathering, RGParams]:
    """`rlx/resource-gathering`; keyword arguments are `RGParams` fields."""
    return ResourceGathering(), RGParams(**params)
