"""Grid worlds as finite MDPs (sparse-outcome form), built from ASCII maps.

Cells are addressed `(row, col)`, row 0 at the top; state `s = row * width + col`.
Actions: 0 up, 1 down, 2 left, 3 right, 4 stay (stay only when `stay_action=True`).
Entering (or staying in) a cell pays that cell's reward, drawn from the cell's reward
distribution; bumping into a wall leaves the agent in place and pays the current
cell's reward. With `slip > 0`, a move goes sideways (perpendicular) with probability
`slip/2` each way; "stay" never slips. Episodes end on entering a terminal cell.
"""

from __future__ import annotations

from collections import defaultdict

import jax.numpy as jnp
import numpy as np

from rlx.envs.tabular.mdp import SparseMDP, validate_mdp

MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1), (0, 0))  # up, down, left, right, stay
_PERPENDICULAR = {0: (2, 3), 1: (2, 3), 2: (0, 1), 3: (0, 1), 4: ()}


def grid_mdp(rows, cell_rewards: dict, terminal_cells: str = "", slip: float = 0.0,
             stay_action: bool = True) -> SparseMDP:
    """Build a grid MDP from a map.

    rows: list of equal-length strings; 'S' marks the start cell.
    cell_rewards: `{char: reward}` or `{char: ((values...), (probs...))}` for the reward
        paid on entering a cell of that character (Bernoulli cells: two values).
        Characters not listed pay 0.
    terminal_cells: characters whose cells end the episode on entry.
    """
    height, width = len(rows), len(rows[0])
    if any(len(r) != width for r in rows):
        raise ValueError(f"grid_mdp: rows must have equal length, got {[len(r) for r in rows]}.")
    if not 0.0 <= slip <= 1.0:
        raise ValueError(f"grid_mdp: slip must be in [0, 1], got {slip}.")
    cells = [c for r in rows for c in r]
    S, A = height * width, 5 if stay_action else 4

    def reward_dist(ch):
        spec = cell_rewards.get(ch, 0.0)
        if np.isscalar(spec):
            return ((float(spec), 1.0),)
        values, probs = spec
        return tuple(zip(map(float, values), map(float, probs)))

    def move(s, d):
        r, c = divmod(s, width)
        dr, dc = MOVES[d]
        nr, nc = r + dr, c + dc
        return nr * width + nc if 0 <= nr < height and 0 <= nc < width else s

    terminal = np.array([c in terminal_cells for c in cells])
    table = [[None] * A for _ in range(S)]
    for s in range(S):
        for a in range(A):
            out = defaultdict(float)
            if terminal[s]:
                out[(s, 0.0)] = 1.0  # masked by solvers; the env never steps from here
            else:
                dirs = [(a, 1.0 - slip if _PERPENDICULAR[a] else 1.0)]
                dirs += [(d, slip / 2) for d in _PERPENDICULAR[a]]
                for d, p in dirs:
                    if p == 0:
                        continue
                    s2 = move(s, d)
                    for v, pv in reward_dist(cells[s2]):
                        out[(s2, v)] += p * pv
            table[s][a] = sorted(out.items())
    n = max(len(o) for row in table for o in row)
    succ = np.zeros((S, A, n), np.int32)
    probs = np.zeros((S, A, n))
    rewards = np.zeros((S, A, n))
    for s in range(S):
        for a in range(A):
            for i, ((s2, v), p) in enumerate(table[s][a]):
                succ[s, a, i], probs[s, a, i], rewards[s, a, i] = s2, p, v
            succ[s, a, len(table[s][a]):] = s  # padding: prob 0, points at a valid state
    start = cells.index("S") if "S" in cells else 0
    mdp = SparseMDP(
        successors=jnp.asarray(succ),
        successor_probs=jnp.asarray(probs, jnp.float32),
        successor_rewards=jnp.asarray(rewards, jnp.float32),
        terminal=jnp.asarray(terminal),
        initial=jnp.asarray(np.eye(S)[start], jnp.float32),
    )
    validate_mdp(mdp)
    return mdp


DDP_GRID = ("S..p", "....", "....", "n..T")


def ddp_grid(bernoulli: bool = False) -> SparseMDP:
    """The 4x4 "generate a desired return" grid (Pires et al. 2025, §7.1 style): start (0, 0), 5 actions,
    entering or staying in (3, 0) pays -1, in (0, 3) pays +2, (3, 3) is terminal;
    run it for 16 steps. `bernoulli=True` gives the stochastic-cell panel: (0, 3) pays
    +4 or 0 and (3, 0) pays -2 or 0, each with probability 1/2 (same means)."""
    if bernoulli:
        rewards = {"p": ((0.0, 4.0), (0.5, 0.5)), "n": ((-2.0, 0.0), (0.5, 0.5))}
    else:
        rewards = {"p": 2.0, "n": -1.0}
    return grid_mdp(DDP_GRID, rewards, terminal_cells="T")


FROZEN_LAKE_4X4 = ("SFFF", "FHFH", "FFFH", "HFFG")


def frozen_lake(rows=FROZEN_LAKE_4X4, slip: float = 2.0 / 3.0) -> SparseMDP:
    """FrozenLake-like slippery grid: reaching 'G' pays +1, holes 'H' and 'G' end the
    episode, 4 actions; with the default slip the intended move happens w.p. 1/3."""
    return grid_mdp(rows, {"G": 1.0}, terminal_cells="HG", slip=slip, stay_action=False)


RISKY_GRID = (".....", "S...G", "HHHHH")


def risky_grid(slip: float = 0.2, step: float = -1.0, goal: float = 10.0,
               lava: float = -4.0, rows=RISKY_GRID) -> SparseMDP:
    """A slippery cliff for CVaR: the direct route along the middle row slips into lava
    ('H', terminal, pays `lava`) w.p. slip/2 per step; the detour over the top row is
    two steps longer and safe. Floor pays `step` per entry, 'G' pays `goal` (terminal).
    4 actions."""
    return grid_mdp(rows, {".": step, "S": step, "G": goal, "H": lava},
                    terminal_cells="GH", slip=slip, stay_action=False)
