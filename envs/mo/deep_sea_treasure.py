"""Deep Sea Treasure (Vamplew et al. 2011; convex values of Yang et al. 2019).

A submarine starts at the top-left corner of an 11-row grid. Below a staircase of
treasure cells lies sea floor, which cannot be entered. Reaching a treasure ends
the episode. Reward: `[treasure, -1]` every step (the treasure is 0 until one is
reached). Actions: 0 up, 1 down, 2 left, 3 right; a move into the sea floor or off
the grid leaves the submarine in place. Episodes are capped at 100 steps.

Layout: the grid follows MO-Gymnasium's maps (11 rows x 11 columns): Vamplew's
11 x 10 map plus one more all-water column on the right, which Yang et al.'s code
added. The extra column changes no shortest path, so the Pareto front is the same;
we keep it so that trajectories match MO-Gymnasium step for step.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlx.pareto import pareto_filter
from rlx.envs.core import Box, Discrete, Environment
from rlx.envs.mo.spec import MOSpec, lattice_spec
from rlx.envs.registry import forwards_kwargs

N_ROWS, N_COLS = 11, 11
START = (0, 0)
#: (row, col) of the ten treasures, left to right; everything strictly below them is sea floor.
TREASURE_CELLS = ((1, 0), (2, 1), (3, 2), (4, 3), (4, 4), (4, 5), (7, 6), (7, 7), (9, 8), (10, 9))
TREASURE_VALUES = {
    # Yang et al. (2019); MO-Gymnasium's default map.
    "convex": (0.7, 8.2, 11.5, 14.0, 15.1, 16.1, 19.6, 20.3, 22.4, 23.7),
    # Vamplew et al. (2011), the original ("concave") values.
    "concave": (1.0, 2.0, 3.0, 5.0, 8.0, 16.0, 24.0, 50.0, 74.0, 124.0),
}
# Up, down, left, right as (d_row, d_col).
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int32)


def build_map(version: str) -> tuple[np.ndarray, np.ndarray]:
    """`(treasure: [11, 11] float, floor: [11, 11] bool)` for a version."""
    if version not in TREASURE_VALUES:
        raise ValueError(
            f"DeepSeaTreasure: unknown version {version!r}; expected one of {sorted(TREASURE_VALUES)}."
        )
    treasure = np.zeros((N_ROWS, N_COLS), np.float64)
    floor = np.zeros((N_ROWS, N_COLS), bool)
    for (row, col), value in zip(TREASURE_CELLS, TREASURE_VALUES[version]):
        treasure[row, col] = value
        floor[row + 1 :, col] = True
    return treasure, floor


@struct.dataclass
class DSTState:
    """Deep Sea Treasure: the submarine's `(row, col)` `[2]` and the step count (scalar)."""

    pos: jax.Array  # [2] int32, (row, col)
    time: jax.Array  # int32, steps taken in this episode


@struct.dataclass
class DSTParams:
    """Deep Sea Treasure's params: the episode cap."""

    max_steps_in_episode: int = 100


class DeepSeaTreasure(Environment):
    """Deep Sea Treasure; `version` is "convex" (default) or "concave" (original)."""

    reward_dim = 2

    def __init__(self, version: str = "convex"):
        self.version = version
        self._treasure_np, self._floor_np = build_map(version)
        self.reward_low = np.array([0.0, -1.0])
        self.reward_high = np.array([self._treasure_np.max(), -1.0])
        #: HV reference point (0, -25) as in MORL-Baselines; EU over 101 weights; gamma 0.99.
        self.mo_spec: MOSpec = lattice_spec(ref_point=(0.0, -25.0), divisions=100, gamma=0.99)
        self.pareto_front_exact = True

    @property
    def name(self) -> str:
        return f"DeepSeaTreasure-{self.version}"

    @property
    def default_params(self) -> DSTParams:
        return DSTParams()

    def observation_space(self, params) -> Box:
        return Box(0.0, float(max(N_ROWS, N_COLS) - 1), (2,), jnp.float32)

    def action_space(self, params) -> Discrete:
        return Discrete(4)

    def reset_env(self, key, params):
        state = DSTState(pos=jnp.asarray(START, jnp.int32), time=jnp.asarray(0, jnp.int32))
        return self._obs(state), state

    def step_env(self, key, state, action, params):
        treasure = jnp.asarray(self._treasure_np, jnp.float32)
        floor = jnp.asarray(self._floor_np)
        nxt = state.pos + jnp.asarray(MOVES)[action]
        inside = jnp.all((nxt >= 0) & (nxt < jnp.array([N_ROWS, N_COLS])))
        clipped = jnp.clip(nxt, 0, jnp.array([N_ROWS - 1, N_COLS - 1]))
        can_enter = inside & ~floor[clipped[0], clipped[1]]
        pos = jnp.where(can_enter, nxt, state.pos)
        value = treasure[pos[0], pos[1]]
        terminated = value > 0
        reward = jnp.stack([value, jnp.asarray(-1.0, jnp.float32)])
        state = DSTState(pos=pos, time=state.time + 1)
        return self._obs(state), state, reward, terminated, {}

    def _obs(self, state):
        return state.pos.astype(jnp.float32)

    # -- the known front ---------------------------------------------------

    def treasure_steps(self) -> dict[tuple[int, int], int]:
        """Fewest steps from the start to each treasure cell, by breadth-first search
        over the map (treasures are terminal, so no path goes through one)."""
        dist = {START: 0}
        queue = collections.deque([START])
        while queue:
            r, c = queue.popleft()
            if self._treasure_np[r, c] > 0:
                continue
            for dr, dc in MOVES:
                nr, nc = r + dr, c + dc
                if 0 <= nr < N_ROWS and 0 <= nc < N_COLS and not self._floor_np[nr, nc]:
                    if (nr, nc) not in dist:
                        dist[(nr, nc)] = dist[(r, c)] + 1
                        queue.append((nr, nc))
        return {cell: dist[cell] for cell in TREASURE_CELLS}

    def pareto_front(self, gamma: float) -> np.ndarray:
        """The exact discounted front, `[10, 2]` float64, sorted by treasure.

        The treasure `T` reached in `s` steps gives `(T * gamma^(s-1), -sum_{i<s} gamma^i)`;
        `s` is the shortest path to it. For gamma = 0.99 or 1 all ten treasures are
        on the front of both versions; at smaller gamma a far treasure can be worth
        less, discounted, than a nearer one (at 0.9 only three convex points remain),
        and dominated points are dropped. (MO-Gymnasium returns all ten regardless.)
        """
        if not (0.0 < gamma <= 1.0):
            raise ValueError(f"pareto_front: gamma must be in (0, 1], got {gamma}.")
        points = []
        for cell, steps in self.treasure_steps().items():
            value = self._treasure_np[cell]
            points.append((value * gamma ** (steps - 1), -sum(gamma**i for i in range(steps))))
        front = pareto_filter(np.asarray(points))
        return front[np.argsort(front[:, 0])]


@forwards_kwargs(DSTParams)
def make_deep_sea_treasure(version: str = "convex", **params) -> tuple[DeepSeaTreasure, DSTParams]:
    """`rlx/deep-sea-treasure`: the "convex" (default) or "concave" treasure values; keyword
    arguments are `DSTParams` fields."""
    env = DeepSeaTreasure(version)
    return env, DSTParams(**params)
