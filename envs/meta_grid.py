"""Procedural grid worlds: the LPG / TA-LPG / GROOVE meta-training distribution.

A level is a pytree (`Level`), so a batch of levels is the same pytree with a leading
axis and `jax.vmap` runs them together. Levels live on a fixed `max_size x max_size`
board; cells outside the level's own `size x size` square count as walls. Cell `p` is
`row * max_size + col`.

Dynamics (Oh et al. 2020, as in Jackson et al.'s GROOVE): actions 0 up, 1 down, 2
left, 3 right, 4 stay; moving into a wall or off the level leaves the agent in place.
Object `k` (one object per type) sits at `obj_pos[k]`. Entering its cell while it is
present pays `obj_reward[k]`, removes it, and ends the episode with probability
`obj_term[k]`. Every absent object reappears with probability `obj_respawn[k]` per step
(never on the step it was taken): at its own cell, or with `random_respawn` at a random
free cell. Episodes are truncated after `max_steps_in_episode` steps.

Observations: "tabular" is the one-hot of the Markov state (agent cell, which objects
are present), `[max_size² · 2^max_objects]`; "grid" is the agent's cell map followed by
one presence map per object, `[max_size² · (1 + max_objects)]`.

Tabular levels (fixed respawn cells) have an exact finite-horizon optimum,
`optimal_return(env, level)`, and the exact return of any policy over the tabular states,
`policy_return(env, level, probs)`, both by backward induction over
`max_steps_in_episode` steps.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from rlx.config import config, static
from rlx.envs.core import Box, Discrete, Environment

OBSERVATIONS = ("tabular", "grid")
MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1), (0, 0))  # up, down, left, right, stay


@flax.struct.dataclass
class Level:
    """One grid world plus the agent lifetime it is trained for (the env params).

    size: int32 [], side of the playable square. walls: bool [M²] (M = max_size).
    start: int32 [], the agent's first cell. num_objects: int32 [], objects in use (<= K).
    obj_pos: int32 [K] cells; obj_reward, obj_term, obj_respawn: float32 [K].
    max_steps_in_episode: int32 []. lifetime: int32 [], agent updates in one inner run.
    """

    size: jax.Array
    walls: jax.Array
    start: jax.Array
    num_objects: jax.Array
    obj_pos: jax.Array
    obj_reward: jax.Array
    obj_term: jax.Array
    obj_respawn: jax.Array
    max_steps_in_episode: jax.Array
    lifetime: jax.Array


@flax.struct.dataclass
class GridState:
    """A grid episode: the agent's cell and the step count (scalars), which of the K objects
    are present and where (`[K]` each)."""

    pos: jax.Array  # int32 [], agent cell
    present: jax.Array  # bool [K]
    obj_pos: jax.Array  # int32 [K] (moves only with random_respawn)
    time: jax.Array  # int32 []


@config
class GridDistribution:
    """The level distribution. Defaults are Jackson et al. 2023's (their "all" distribution)."""

    min_size: int = static(4, "smallest level side", ge=2)
    max_size: int = static(10, "largest level side; the board is max_size x max_size", ge=2)
    min_objects: int = static(1, "fewest object types", ge=0)
    max_objects: int = static(5, "most object types (one object each)", ge=1, le=8)
    walls: int = static(15, "walls drawn uniformly over the max_size² board", ge=0)
    episode_length: tuple = static((20, 750), "log-uniform range of the episode length")
    lifetime: tuple = static((10, 250), "log-uniform range of the agent lifetime, in updates")
    term_prob: tuple = static((0.01, 1.0), "log-uniform range of an object's termination probability")
    respawn_prob: tuple = static((1e-3, 0.1), "log-uniform range of an object's respawn probability")

    def check(self) -> None:
        name = type(self).__name__
        if self.min_size > self.max_size:
            raise ValueError(f"{name}.min_size = {self.min_size} is invalid: it must be <= max_size = {self.max_size}.")
        if self.min_objects > self.max_objects:
            raise ValueError(
                f"{name}.min_objects = {self.min_objects} is invalid: it must be <= max_objects = {self.max_objects}."
            )
        if self.walls > self.max_size**2 - 2:
            raise ValueError(f"{name}.walls = {self.walls} is invalid: it must be <= max_size² - 2.")
        for field, low in (("episode_length", 1), ("lifetime", 1), ("term_prob", 0), ("respawn_prob", 0)):
            lo_hi = getattr(self, field)
            if len(lo_hi) != 2 or not (low <= lo_hi[0] <= lo_hi[1]) or lo_hi[0] <= 0:
                raise ValueError(f"{name}.{field} = {lo_hi!r} is invalid: it must be a pair 0 < low <= high.")
        for field in ("term_prob", "respawn_prob"):
            if getattr(self, field)[1] > 1:
                raise ValueError(f"{name}.{field} = {getattr(self, field)!r} is invalid: probabilities must be <= 1.")


def _log_uniform(key, lo, hi, shape=()):
    return jnp.exp(jax.random.uniform(key, shape, minval=jnp.log(lo), maxval=jnp.log(hi)))


def sample_level(key: jax.Array, dist: GridDistribution) -> Level:
    """One random level (jittable, vmappable over keys)."""
    M, K = dist.max_size, dist.max_objects
    ks = jax.random.split(key, 10)
    size = jax.random.randint(ks[0], (), dist.min_size, dist.max_size + 1)
    n = jax.random.randint(ks[1], (), dist.min_objects, K + 1)
    rows, cols = jnp.divmod(jnp.arange(M * M), M)
    inside = (rows < size) & (cols < size)
    wall_cells = jax.random.choice(ks[2], M * M, (dist.walls,), replace=False) if dist.walls else jnp.zeros(0, int)
    walls = jnp.zeros(M * M, bool).at[wall_cells].set(True) & inside
    free = inside & ~walls
    # Start and objects on distinct free cells: top-(K+1) of Gumbel noise over free cells.
    g = jnp.where(free, jax.random.gumbel(ks[3], (M * M,)), -jnp.inf)
    score, cells = jax.lax.top_k(g, K + 1)
    start = cells[0]
    placed = jnp.isfinite(score[1:])  # a crowded level may have fewer free cells than objects
    num_objects = jnp.minimum(n, jnp.sum(placed)).astype(jnp.int32)
    reward = jax.random.uniform(ks[4], (K,), minval=-1.0, maxval=1.0)
    reward = reward.at[0].set(jnp.abs(reward[0]))  # the first object is always positive
    term = _log_uniform(ks[5], *dist.term_prob, (K,))
    respawn = _log_uniform(ks[6], *dist.respawn_prob, (K,))
    ep_len = jnp.round(_log_uniform(ks[7], *dist.episode_length)).astype(jnp.int32)
    lifetime = jnp.round(_log_uniform(ks[8], *dist.lifetime)).astype(jnp.int32)
    return Level(size.astype(jnp.int32), walls, start.astype(jnp.int32), num_objects, cells[1:].astype(jnp.int32),
                 reward, term, respawn, ep_len, lifetime)  # fmt: skip


def sample_levels(key: jax.Array, dist: GridDistribution, n: int) -> Level:
    """A batch of `n` levels, leaves with a leading `[n]` axis."""
    return jax.vmap(sample_level, (0, None))(jax.random.split(key, n), dist)


def make_level(rows: list[str], objects: list[tuple[float, float, float]], max_size: int | None = None,
               max_objects: int | None = None, max_steps: int = 50, lifetime: int = 10) -> Level:  # fmt: skip
    """A level from a map: '#' wall, 'S' start, '0'..'7' object k, '.' floor.
    `objects[k] = (reward, term_prob, respawn_prob)`."""
    size = len(rows)
    if any(len(r) != size for r in rows):
        raise ValueError(f"make_level: the map must be square, got rows of lengths {[len(r) for r in rows]}.")
    M = max_size or size
    K = max_objects or max(1, len(objects))
    if M < size or K < len(objects):
        raise ValueError(f"make_level: max_size = {M} / max_objects = {K} are smaller than the map.")
    walls = np.zeros(M * M, bool)
    pos = np.zeros(K, np.int32)
    start = None
    for r, line in enumerate(rows):
        for c, ch in enumerate(line):
            p = r * M + c
            if ch == "#":
                walls[p] = True
            elif ch == "S":
                start = p
            elif ch.isdigit():
                pos[int(ch)] = p
    if start is None:
        raise ValueError("make_level: the map has no start cell 'S'.")
    obj = np.zeros((K, 3), np.float32)
    obj[: len(objects)] = np.asarray(objects, np.float32).reshape(-1, 3)
    return Level(jnp.int32(size), jnp.asarray(walls), jnp.int32(start), jnp.int32(len(objects)), jnp.asarray(pos),
                 jnp.asarray(obj[:, 0]), jnp.asarray(obj[:, 1]), jnp.asarray(obj[:, 2]), jnp.int32(max_steps),
                 jnp.int32(lifetime))  # fmt: skip


class MetaGrid(Environment):
    """The grid world as an rlx `Environment`; the level is the env params."""

    def __init__(self, max_size: int = 10, max_objects: int = 5, obs: str = "tabular", random_respawn: bool = False):
        if obs not in OBSERVATIONS:
            raise ValueError(f"MetaGrid obs = {obs!r} is invalid: accepted values are {OBSERVATIONS}.")
        if obs == "tabular" and random_respawn:
            raise ValueError("MetaGrid: random_respawn needs obs = 'grid' (tabular states assume fixed object cells).")
        self.max_size, self.max_objects, self.obs, self.random_respawn = max_size, max_objects, obs, random_respawn

    @property
    def name(self) -> str:
        return f"MetaGrid-{self.obs}"

    @property
    def num_cells(self) -> int:
        return self.max_size**2

    @property
    def num_states(self) -> int:
        """Tabular states: agent cell x presence pattern."""
        return self.num_cells * 2**self.max_objects

    @property
    def default_params(self) -> Level:
        return sample_level(jax.random.key(0), GridDistribution(max_size=self.max_size, max_objects=self.max_objects,
                                                                min_size=min(4, self.max_size)))  # fmt: skip

    def observation_space(self, params: Any = None) -> Box:
        dim = self.num_states if self.obs == "tabular" else self.num_cells * (1 + self.max_objects)
        return Box(0.0, 1.0, (dim,))

    def action_space(self, params: Any = None) -> Discrete:
        return Discrete(5)

    # -- dynamics -------------------------------------------------------------------------
    def blocked(self, level: Level) -> jax.Array:
        """bool [M²]: walls and cells outside the level."""
        rows, cols = jnp.divmod(jnp.arange(self.num_cells), self.max_size)
        return level.walls | (rows >= level.size) | (cols >= level.size)

    def next_cell(self, pos: jax.Array, action: jax.Array, level: Level) -> jax.Array:
        M = self.max_size
        r, c = jnp.divmod(pos, M)
        d = jnp.asarray(MOVES)[action]
        nr, nc = r + d[0], c + d[1]
        ok = (nr >= 0) & (nc >= 0) & (nr < level.size) & (nc < level.size)
        p = jnp.where(ok, nr * M + nc, pos)
        return jnp.where(self.blocked(level)[jnp.clip(p, 0, M * M - 1)], pos, p)

    def active(self, level: Level) -> jax.Array:
        return jnp.arange(self.max_objects) < level.num_objects

    def reset_env(self, key, level: Level):
        state = GridState(level.start, self.active(level), level.obj_pos, jnp.int32(0))
        return self.get_obs(state), state

    def step_env(self, key, state: GridState, action, level: Level):
        k_term, k_resp, k_pos = jax.random.split(key, 3)
        pos = self.next_cell(state.pos, action, level)
        taken = state.present & (state.obj_pos == pos)
        reward = jnp.sum(jnp.where(taken, level.obj_reward, 0.0))
        terminated = jax.random.uniform(k_term) < jnp.sum(jnp.where(taken, level.obj_term, 0.0))
        respawn = jax.random.uniform(k_resp, (self.max_objects,)) < level.obj_respawn
        appear = ~state.present & respawn & self.active(level)
        obj_pos = state.obj_pos
        if self.random_respawn:
            obj_pos = jnp.where(appear, self._free_cells(k_pos, pos, state, level), obj_pos)
        present = (state.present | appear) & ~taken
        state = GridState(pos, present, obj_pos, state.time + 1)
        return self.get_obs(state), state, reward, terminated, {}

    def _free_cells(self, key, pos, state, level):
        """[K] random distinct cells that hold no wall, agent or present object."""
        occupied = self.blocked(level).at[pos].set(True).at[state.obj_pos].max(state.present)
        g = jnp.where(occupied, -jnp.inf, jax.random.gumbel(key, (self.num_cells,)))
        score, cells = jax.lax.top_k(g, self.max_objects)
        return jnp.where(jnp.isfinite(score), cells, state.obj_pos)

    # -- observations ---------------------------------------------------------------------
    def state_index(self, pos: jax.Array, present: jax.Array) -> jax.Array:
        bits = jnp.sum(jnp.where(present, 2 ** jnp.arange(self.max_objects), 0))
        return pos + self.num_cells * bits

    def get_obs(self, state: GridState) -> jax.Array:
        if self.obs == "tabular":
            return jax.nn.one_hot(self.state_index(state.pos, state.present), self.num_states)
        agent = jax.nn.one_hot(state.pos, self.num_cells)
        objs = jax.nn.one_hot(state.obj_pos, self.num_cells) * state.present[:, None]
        return jnp.concatenate([agent, objs.reshape(-1)])

    def all_obs(self, level: Level) -> jax.Array:
        """[S, obs_dim]: the observation of every tabular state (objects at their cells)."""
        pos, present = self._tabular_states()
        obj_pos = jnp.broadcast_to(level.obj_pos, present.shape)
        return jax.vmap(lambda p, e, o: self.get_obs(GridState(p, e, o, jnp.int32(0))))(pos, present, obj_pos)

    def _tabular_states(self):
        s = np.arange(self.num_states)
        pos, bits = s % self.num_cells, s // self.num_cells
        present = (bits[:, None] >> np.arange(self.max_objects)) & 1
        return jnp.asarray(pos, jnp.int32), jnp.asarray(present, bool)


# -- exact returns by backward induction --------------------------------------------------------
def _model(env: MetaGrid, level: Level):
    """Expected one-step model over tabular states s = (cell, presence bits).

    Returns (reward [S, A], continue [S, A] = 1 - termination probability,
    next_cell [S, A], next_bits [S, A, E] the distribution of the next presence pattern)."""
    if env.random_respawn:
        raise ValueError("exact returns need fixed respawn cells (MetaGrid(random_respawn=False)).")
    K, C = env.max_objects, env.num_cells
    E = 2**K
    patterns = jnp.asarray((np.arange(E)[:, None] >> np.arange(K)) & 1, bool)  # [E, K]
    cells = jnp.arange(C)
    nxt = jax.vmap(lambda p: jax.vmap(lambda a: env.next_cell(p, a, level))(jnp.arange(5)))(cells)  # [C, A]
    hit = (level.obj_pos[None, None, :] == nxt[..., None]) & env.active(level)  # [C, A, K]
    taken = patterns[:, None, None, :] & hit[None]  # [E, C, A, K]
    reward = jnp.sum(jnp.where(taken, level.obj_reward, 0.0), -1)
    cont = 1.0 - jnp.sum(jnp.where(taken, level.obj_term, 0.0), -1)
    # Probability that object k is present next step, then the product over objects.
    p1 = jnp.where(taken, 0.0, jnp.where(patterns[:, None, None, :], 1.0, env.active(level) * level.obj_respawn))
    prob = jnp.prod(jnp.where(patterns[None, None, None], p1[..., None, :], 1.0 - p1[..., None, :]), -1)  # [E,C,A,E']
    # Order states as s = cell + C * pattern.
    S = C * E
    return (reward.reshape(S, 5), jnp.clip(cont, 0.0, 1.0).reshape(S, 5),
            jnp.broadcast_to(nxt, (E, C, 5)).reshape(S, 5), prob.reshape(S, 5, E))  # fmt: skip


def _backward(env: MetaGrid, level: Level, probs: jax.Array | None) -> jax.Array:
    """Expected return from the start state over `max_steps_in_episode` steps: optimal
    (`probs = None`) or of the stationary policy `probs` [S, A]."""
    reward, cont, nxt, prob = _model(env, level)
    C, E = env.num_cells, 2**env.max_objects

    def backup(_, v):  # v [S]: value with h steps to go -> h + 1 steps to go
        vn = v.reshape(E, C).T  # [cell, pattern]
        q = reward + cont * jnp.einsum("sae,sae->sa", prob, vn[nxt])
        return q.max(-1) if probs is None else jnp.sum(probs * q, -1)

    v = jax.lax.fori_loop(0, level.max_steps_in_episode, backup, jnp.zeros(C * E))
    return v[env.state_index(level.start, env.active(level))]


def optimal_return(env: MetaGrid, level: Level) -> jax.Array:
    """Exact optimal expected (undiscounted) episode return of a tabular level (scalar). Finite
    for every level: an unreachable or missing positive object gives 0 (stay away from the rest)."""
    return _backward(env, level, None)


def policy_return(env: MetaGrid, level: Level, probs: jax.Array) -> jax.Array:
    """Exact expected episode return of the stationary policy `probs` [S, A] (rows over
    `env.all_obs(level)`)."""
    return _backward(env, level, probs)
