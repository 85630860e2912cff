"""Finite MDPs as arrays, in a dense and a sparse-successor form, and generators.

Rewards are distributions over a finite set per (s, a): `reward_values[s, a, k]` with
`reward_probs[s, a, k]`, drawn independently of the next state. A deterministic reward
table `R[s, a]` is the case K = 1; a Bernoulli reward cell is K = 2.

Terminal states end the episode on entry: from a terminal state the return is 0,
whatever its rows say (solvers mask them, the env reports `terminated`).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class TabularMDP:
    """Dense finite MDP (all fields are arrays, so MDPs stack and vmap).

    transitions: `[S, A, S]`, `P[s, a, s']`, rows sum to 1.
    reward_values: `[S, A, K]` possible rewards of taking a in s.
    reward_probs: `[S, A, K]` their probabilities, summing to 1 over k.
    terminal: bool `[S]`.
    initial: `[S]` start-state distribution.
    """

    transitions: jax.Array
    reward_values: jax.Array
    reward_probs: jax.Array
    terminal: jax.Array
    initial: jax.Array

    @property
    def num_states(self) -> int:
        return self.transitions.shape[-1]

    @property
    def num_actions(self) -> int:
        return self.transitions.shape[-2]


@flax.struct.dataclass
class SparseMDP:
    """Sparse-outcome form: each (s, a) lists at most N joint outcomes (s', r).

    successors: int32 `[S, A, N]`; successor_probs: `[S, A, N]` (padding has prob 0);
    successor_rewards: `[S, A, N]`, the reward paid with that outcome. Unlike the dense
    form the reward may depend on s' (e.g. "entering cell X pays r" in a slippery grid).
    terminal, initial: as in `TabularMDP`.
    """

    successors: jax.Array
    successor_probs: jax.Array
    successor_rewards: jax.Array
    terminal: jax.Array
    initial: jax.Array

    @property
    def num_states(self) -> int:
        return self.terminal.shape[-1]

    @property
    def num_actions(self) -> int:
        return self.successors.shape[-2]


def make_mdp(transitions, rewards=None, *, reward_values=None, reward_probs=None,
             terminal=None, initial=None, validate: bool = True, dtype=None) -> TabularMDP:
    """Build a `TabularMDP` from a deterministic `rewards: [S, A]` or from
    `reward_values, reward_probs: [S, A, K]`. `initial` defaults to state 0. `dtype`: of
    the float arrays; default jax's float (float64 under x64)."""
    P = np.asarray(transitions, np.float64)
    S, A = P.shape[0], P.shape[1]
    if rewards is not None:
        if reward_values is not None:
            raise ValueError("make_mdp: give `rewards` [S, A] or `reward_values`/`reward_probs`, not both.")
        reward_values = np.asarray(rewards, np.float64)[..., None]
        reward_probs = np.ones_like(reward_values)
    elif reward_values is None:
        raise ValueError("make_mdp: missing rewards; give `rewards` [S, A] or `reward_values` [S, A, K].")
    reward_values = np.asarray(reward_values, np.float64)
    if reward_probs is None:
        reward_probs = np.full(reward_values.shape, 1.0 / reward_values.shape[-1])
    terminal = np.zeros(S, bool) if terminal is None else np.asarray(terminal, bool)
    if initial is None:
        initial = np.eye(S)[0]
    dtype = dtype or jnp.result_type(float)
    mdp = TabularMDP(
        transitions=jnp.asarray(P, dtype),
        reward_values=jnp.asarray(reward_values, dtype),
        reward_probs=jnp.asarray(reward_probs, dtype),
        terminal=jnp.asarray(terminal),
        initial=jnp.asarray(initial, dtype),
    )
    if validate:
        validate_mdp(mdp)
    return mdp


def astype(mdp, dtype):
    """The MDP with every float array cast to `dtype` (e.g. float64 under x64)."""
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, mdp)


def validate_mdp(mdp, atol: float = 1e-5) -> None:
    """Raise a ValueError naming the field if probabilities are not distributions.

    Works on a single MDP or a stacked population (leading batch axes), host-side.
    """
    probs = {"initial": np.asarray(mdp.initial)}
    if isinstance(mdp, SparseMDP):
        probs["successor_probs"] = np.asarray(mdp.successor_probs)
        S = np.asarray(mdp.terminal).shape[-1]
        succ = np.asarray(mdp.successors)
        if succ.min() < 0 or succ.max() >= S:
            raise ValueError(f"mdp.successors: indices must be in [0, {S}), got [{succ.min()}, {succ.max()}].")
    else:
        probs["transitions"] = np.asarray(mdp.transitions)
        probs["reward_probs"] = np.asarray(mdp.reward_probs)
    for name, p in probs.items():
        if np.any(p < -atol):
            idx = np.unravel_index(np.argmin(p), p.shape)
            raise ValueError(f"mdp.{name}: probabilities must be >= 0; entry {idx} is {p[idx]:.6g}.")
        sums = p.sum(-1)
        bad = np.abs(sums - 1.0) > atol
        if np.any(bad):
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            where = {"transitions": "P[s, a, :]", "successor_probs": "P[s, a, :]",
                     "reward_probs": "reward_probs[s, a, :]", "initial": "initial[:]"}[name]
            raise ValueError(
                f"mdp.{name}: each row {where} must sum to 1 (within {atol}); row {idx} sums to "
                f"{sums[idx]:.6g}. Normalise it, e.g. P / P.sum(-1, keepdims=True)."
            )


def reward_range(mdp) -> tuple[float, float]:
    """Smallest and largest reward with positive probability (host-side, any batch)."""
    if isinstance(mdp, SparseMDP):
        v, live = np.asarray(mdp.successor_rewards, np.float64), np.asarray(mdp.successor_probs) > 0
    else:
        v, live = np.asarray(mdp.reward_values, np.float64), np.asarray(mdp.reward_probs) > 0
    return float(v[live].min()), float(v[live].max())


def outcomes(mdp) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Joint outcomes `(successors, probs, rewards)`, each `[S, A, N]`, of either form.

    For a dense MDP, N = S*K: outcome (s', k) has probability `P[s,a,s'] p[s,a,k]`
    (rewards are independent of s' there). Jittable; no batch axes.
    """
    if isinstance(mdp, SparseMDP):
        return mdp.successors, mdp.successor_probs, mdp.successor_rewards
    S, A, K = mdp.reward_values.shape
    succ = jnp.broadcast_to(jnp.arange(S, dtype=jnp.int32)[:, None], (S, A, S, K))
    probs = mdp.transitions[:, :, :, None] * mdp.reward_probs[:, :, None, :]
    rewards = jnp.broadcast_to(mdp.reward_values[:, :, None, :], (S, A, S, K))
    return succ.reshape(S, A, S * K), probs.reshape(S, A, S * K), rewards.reshape(S, A, S * K)


def achievable_returns(mdp, horizon: int) -> np.ndarray:
    """Every undiscounted return that some action sequence gets with positive probability
    from a start state within `horizon` steps (episodes end at a terminal state or at the
    horizon), sorted. Brute force over forward sets of (state, return so far), on the
    host: a reference for the DP, meant for small grids with integer-like rewards.
    Returns `[N]`."""
    succ, probs, rew = (np.asarray(x) for x in outcomes(mdp))
    term = np.asarray(mdp.terminal)
    frontier = {(int(s), 0.0) for s in np.flatnonzero(np.asarray(mdp.initial) > 0)}
    ended: set[tuple[int, float]] = set()
    for _ in range(horizon):
        nxt = set()
        for s, g in frontier:
            for a, n in zip(*np.nonzero(probs[s] > 0)):
                s2, g2 = int(succ[s, a, n]), g + float(rew[s, a, n])
                (ended if term[s2] else nxt).add((s2, g2))
        frontier = nxt
    return np.array(sorted({g for _, g in frontier | ended}))


def to_sparse(mdp: TabularMDP, max_outcomes: int | None = None) -> SparseMDP:
    """Dense -> sparse outcomes (host-side, one MDP), keeping only outcomes of positive
    probability. N defaults to the largest count of such outcomes."""
    succ, probs, rewards = (np.asarray(x) for x in outcomes(mdp))
    count = int((probs > 0).sum(-1).max())
    n = count if max_outcomes is None else max_outcomes
    if n < count:
        raise ValueError(f"to_sparse: max_outcomes={n} < largest outcome count {count}.")
    order = np.argsort(-probs, axis=-1, kind="stable")[..., :n]
    take = lambda x: np.take_along_axis(x, order, -1)
    return SparseMDP(
        successors=jnp.asarray(take(succ), jnp.int32),
        successor_probs=jnp.asarray(take(probs), mdp.transitions.dtype),
        successor_rewards=jnp.asarray(take(rewards), mdp.reward_values.dtype),
        terminal=mdp.terminal,
        initial=mdp.initial,
    )


# --------------------------------------------------------------------------------------
# Generators (jittable, vmappable over keys)
# --------------------------------------------------------------------------------------


def _flat_dirichlet(key, shape, dtype):
    # Dirichlet(1, ..., 1) is normalised Exp(1) noise; much cheaper to compile than
    # jax.random.dirichlet's gamma sampler.
    e = jax.random.exponential(key, shape, dtype)
    return e / e.sum(-1, keepdims=True)


def random_mdp(key, num_states: int, num_actions: int, num_rewards: int = 2,
               reward_low: int = -2, reward_high: int = 2, branching: int | None = None,
               integer_rewards: bool = True, num_terminal: int = 0, dtype=None) -> TabularMDP:
    """A random MDP: Dirichlet(1) rows over `branching` random successors (all states
    when None), `num_rewards` reward outcomes per (s, a), integers in
    `[reward_low, reward_high]` (or uniform floats), with Dirichlet(1) probabilities.
    Starts in state 0; the last `num_terminal` states are terminal. `jax.vmap` over keys
    makes a population. dtype defaults to the default float (float64 under x64)."""
    dtype = dtype or jnp.result_type(float)
    k_p, k_succ, k_r, k_rp = jax.random.split(key, 4)
    S, A = num_states, num_actions
    probs = _flat_dirichlet(k_p, (S, A, branching or S), dtype)
    if branching is None:
        P = probs
    else:
        succ = jax.vmap(lambda k: jax.random.choice(k, S, (branching,), replace=False))(
            jax.random.split(k_succ, S * A)).reshape(S, A, branching)
        P = jnp.sum(jax.nn.one_hot(succ, S, dtype=dtype) * probs[..., None], axis=-2)
    if integer_rewards:
        values = jax.random.randint(k_r, (S, A, num_rewards), reward_low, reward_high + 1).astype(dtype)
    else:
        values = jax.random.uniform(k_r, (S, A, num_rewards), dtype, reward_low, reward_high)
    rprobs = _flat_dirichlet(k_rp, (S, A, num_rewards), dtype)
    terminal = jnp.arange(S) >= S - num_terminal
    return TabularMDP(P, values, rprobs, terminal, jax.nn.one_hot(0, S, dtype=dtype))


def layered_mdp(key, num_layers: int, width: int, num_actions: int, num_rewards: int = 2,
                reward_low: int = -2, reward_high: int = 2, dtype=None) -> TabularMDP:
    """A layered (acyclic) MDP: state 0 starts, layer l (width states) moves only to
    layer l+1, the last layer moves to one terminal sink. S = 1 + L*width + 1.
    Every episode lasts exactly `num_layers + 1` steps."""
    S = 2 + num_layers * width
    dtype = dtype or jnp.result_type(float)
    k_p, k_r, k_rp = jax.random.split(key, 3)
    layer = np.concatenate([[0], 1 + np.repeat(np.arange(num_layers), width), [num_layers + 1]])
    # Allowed successors: every state of the next layer (the sink after the last layer).
    nxt = layer[None, :] == layer[:, None] + 1
    nxt[-1, -1] = True  # the sink absorbs
    nxt[layer == num_layers, -1] = True
    logits = jnp.where(jnp.asarray(nxt)[:, None, :], 0.0, -jnp.inf)
    noise = jax.random.exponential(k_p, (S, num_actions, S), dtype)  # Dirichlet(1) via Exp(1)
    w = jnp.where(jnp.isfinite(logits), noise, 0.0)
    P = (w / w.sum(-1, keepdims=True)).astype(dtype)
    values = jax.random.randint(k_r, (S, num_actions, num_rewards), reward_low, reward_high + 1).astype(dtype)
    values = values.at[-1].set(0.0)
    rprobs = _flat_dirichlet(k_rp, (S, num_actions, num_rewards), dtype)
    terminal = jnp.zeros(S, bool).at[-1].set(True)
    return TabularMDP(P, values, rprobs, terminal, jax.nn.one_hot(0, S, dtype=dtype))
