"""Stock-augmented distributional value and policy iteration on finite MDPs.

Pires et al. (2025), §3-4. The state is augmented with a stock c
(`c_0` given, `c_{t+1} = (c_t + r) / gamma`) and the objective is `E f(c_0 + G)`.

Representation: for every state s, grid stock `c_j` and first action a, a categorical
return distribution over fixed atoms, `eta[s, j, a, m]` (`[S, J, A, M]`). The stock
lives on a uniform grid `stocks: [J]`; a next stock `(c_j + r) / gamma` is clipped to the
grid and split between its two neighbouring grid stocks with linear-interpolation
weights (the mixture of the two neighbours' distributions). This equals the true
problem when no interpolation or clipping happens (the **exact mode**: gamma = 1,
integer rewards, integer atoms and stocks), or when clipping happens only outside
`[-G_max, -G_min]` for a hinge-type f (such stocks change nothing); otherwise it carries an
interpolation (and atom-projection) error.

Greedy action (note the shift by c): `pi(s, c) = argmax_a E_{Z ~ eta(s,c,a)} f(c + Z)`.

Modes: `horizon=H` gives the non-stationary finite-horizon optimum in H backups, with a
policy per time step `[H, S, J]`; `horizon=None, num_iterations=n` runs n discounted
backups and acts with the stationary greedy policy `[S, J]`.

All core functions are pure and jittable and vmap over MDPs and objectives. Host-side
`validate` raises a ValueError for bad inputs before anything compiles; `solve`
validates and then runs the jitted DVI.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from rlx import distributional as dist
from rlx.agents.ddp import objectives as objectives_lib
from rlx.agents.ddp.objectives import Objective
from rlx.envs.tabular.mdp import SparseMDP, TabularMDP, outcomes, reward_range, validate_mdp


@flax.struct.dataclass
class StockGrid:
    """Uniform atom and stock grids (arrays, so grids can differ across a population).

    atoms: `[M]` return atoms; stocks: `[J]` grid stocks. Both strictly increasing
    and evenly spaced.
    """

    atoms: jax.Array
    stocks: jax.Array

    @property
    def num_atoms(self) -> int:
        return self.atoms.shape[-1]

    @property
    def num_stocks(self) -> int:
        return self.stocks.shape[-1]


class DVIResult(NamedTuple):
    """eta: `[S, J, A, M]` return distributions after the last backup; q: `[S, J, A]`
    `E f(c_j + Z)`; policy: `[H, S, J]` (time-indexed, finite horizon) or `[S, J]`."""

    eta: jax.Array
    q: jax.Array
    policy: jax.Array


def make_grid(v_min, v_max, num_atoms: int, c_min, c_max, num_stocks: int, dtype=None) -> StockGrid:
    """A `StockGrid` with `num_atoms` atoms on `[v_min, v_max]` and `num_stocks` stocks
    on `[c_min, c_max]` (host-side: the ends are numbers, not traced arrays)."""
    dtype = dtype or jnp.result_type(float)
    # numpy's linspace is start + i * step, so grids of whole numbers come out whole.
    # jnp.linspace interpolates between the ends instead, and under float64 gives e.g.
    # 1.9999999999999996 for 2: a threshold utility (x >= 0) then misjudges c + z = 0.
    return StockGrid(atoms=jnp.asarray(np.linspace(float(v_min), float(v_max), num_atoms), dtype),
                     stocks=jnp.asarray(np.linspace(float(c_min), float(c_max), num_stocks), dtype))


def return_bounds(mdp, gamma: float, horizon: int | None) -> tuple[float, float]:
    """`(G_min, G_max)`, bounds on every return-to-go, always containing 0 (episodes can
    end early). Host-side; over the whole population when `mdp` is batched."""
    r_min, r_max = reward_range(mdp)
    gamma = float(gamma)
    if horizon is None:
        scale = 1.0 / (1.0 - gamma)
    else:
        scale = float(horizon) if gamma == 1.0 else (1.0 - gamma**horizon) / (1.0 - gamma)
    return min(0.0, r_min) * scale, max(0.0, r_max) * scale


def safe_stock_range(mdp, gamma: float, horizon: int | None) -> tuple[float, float]:
    """`[-G_max, -G_min]`: for hinge-type f (kink at 0) stocks outside it change no
    decision, so a grid over it with clipping loses nothing but interpolation error.
    Also the range to normalise a network's stock input with."""
    g_min, g_max = return_bounds(mdp, gamma, horizon)
    return -g_max, -g_min


def exact_grid(mdp, horizon: int, spacing: float = 1.0, c0_range=None, dtype=None) -> StockGrid:
    """Integer (multiple-of-`spacing`) atoms over `[G_min, G_max]` and stocks over the safe
    range, widened to `c0_range + [G_min, G_max]` when given (needed for non-hinge f,
    whose stocks must never be clipped). For the exact mode (gamma = 1)."""
    g_min, g_max = return_bounds(mdp, 1.0, horizon)
    c_lo, c_hi = -g_max, -g_min
    if c0_range is not None:
        c_lo, c_hi = min(c_lo, c0_range[0] + g_min), max(c_hi, c0_range[1] + g_max)
    lo, hi = np.floor(g_min / spacing), np.ceil(g_max / spacing)
    clo, chi = np.floor(c_lo / spacing), np.ceil(c_hi / spacing)
    dtype = dtype or jnp.result_type(float)
    return StockGrid(atoms=jnp.asarray(np.arange(lo, hi + 1) * spacing, dtype),
                     stocks=jnp.asarray(np.arange(clo, chi + 1) * spacing, dtype))


# --------------------------------------------------------------------------------------
# Validation (host-side, before any compile)
# --------------------------------------------------------------------------------------


def _uniform(x: np.ndarray, name: str) -> float:
    if x.shape[-1] < 2:
        raise ValueError(f"{name}: needs at least 2 points, got {x.shape[-1]}.")
    d = np.diff(x, axis=-1)
    if np.any(d <= 0) or not np.allclose(d, d[..., :1], rtol=1e-5, atol=1e-6):
        raise ValueError(f"{name}: must be strictly increasing and evenly spaced (use make_grid).")
    return float(d.reshape(-1)[0])


def validate(mdp, grid: StockGrid, gamma, horizon: int | None, objective: Objective | None = None,
             *, exact: bool = False, num_iterations: int | None = None) -> None:
    """Raise a ValueError naming the bad field, with the accepted values, for:
    gamma outside (0, 1]; transition or reward rows that are not distributions; returns
    outside the atom support; a stock grid that cannot cover the stocks that matter
    (`[-G_max, -G_min]`, plus `c_0 + [G_min, G_max]` for non-hinge f with gamma = 1);
    and, with `exact=True`, anything that would make the result inexact. Warns when the
    objective needs gamma = 1. Works on stacked populations too."""
    g = np.asarray(gamma, np.float64)
    if g.size == 0 or np.any(~(g > 0.0)) or np.any(g > 1.0):
        raise ValueError(f"gamma: must be in (0, 1], got {g}.")
    if horizon is None and np.any(g == 1.0):
        raise ValueError("horizon: gamma = 1 needs a finite horizon; pass horizon=H or use gamma < 1.")
    if horizon is None and num_iterations is not None and num_iterations < 1:
        raise ValueError(f"num_iterations: must be >= 1, got {num_iterations}.")
    if horizon is not None and (int(horizon) != horizon or horizon < 1):
        raise ValueError(f"horizon: must be a positive integer or None, got {horizon}.")
    validate_mdp(mdp)
    atoms, stocks = np.asarray(grid.atoms, np.float64), np.asarray(grid.stocks, np.float64)
    dz = _uniform(atoms, "grid.atoms")
    dc = _uniform(stocks, "grid.stocks")
    g_max_gamma = float(np.max(g))
    g_min, g_max = return_bounds(mdp, g_max_gamma, horizon)
    r_min, r_max = reward_range(mdp)
    tol = 1e-6 * max(1.0, abs(g_min), abs(g_max))
    if atoms.min() > g_min + tol or atoms.max() < g_max - tol:
        raise ValueError(
            f"grid.atoms: rewards in [{r_min:g}, {r_max:g}] give returns in [{g_min:g}, {g_max:g}] "
            f"(horizon={horizon}, gamma={g_max_gamma:g}), outside the atom support "
            f"[{atoms.min():g}, {atoms.max():g}]. Widen the atoms to cover it (e.g. exact_grid or "
            f"make_grid(v_min={g_min:g}, v_max={g_max:g}, ...))."
        )
    c_lo, c_hi = -g_max, -g_min
    if objective is not None:
        non_hinge = ~objectives_lib.is_hinge(objective)
        given = ~np.asarray(objective.optimise_c0)
        c0 = np.asarray(objective.c0, np.float64)
        if np.any(given):
            c0g = c0[given] if c0.ndim else c0
            c_lo, c_hi = min(c_lo, float(np.min(c0g))), max(c_hi, float(np.max(c0g)))
        if np.any(non_hinge & given) and np.all(g == 1.0):
            c0n = c0[non_hinge & given] if c0.ndim else c0
            c_lo = min(c_lo, float(np.min(c0n)) + g_min)
            c_hi = max(c_hi, float(np.max(c0n)) + g_max)
    if stocks.min() > c_lo + tol or stocks.max() < c_hi - tol:
        raise ValueError(
            f"grid.stocks: spans [{stocks.min():g}, {stocks.max():g}] but the stocks that matter span "
            f"[{c_lo:g}, {c_hi:g}] (-G_max..-G_min, the given c_0, and c_0 + returns for non-hinge f). "
            "Widen the stock grid, e.g. with safe_stock_range or exact_grid."
        )
    if exact:
        if np.any(g != 1.0):
            raise ValueError(f"gamma: exact mode needs gamma = 1, got {g}.")
        if not np.isclose(dz, dc):
            raise ValueError(f"grid.stocks: exact mode needs stock spacing == atom spacing ({dz:g}), got {dc:g}.")
        if isinstance(mdp, SparseMDP):
            rv = np.asarray(mdp.successor_rewards, np.float64)
        else:
            rv = np.asarray(mdp.reward_values, np.float64)
        # Exactly, not to a tolerance: sums of values that are off by an ulp land beside the
        # atoms and kinks they should hit (a stock of 1.9999999999999996 plus a return of -2
        # is below a threshold at 0).
        for name, x in (("rewards", rv), ("grid.atoms", atoms), ("grid.stocks", stocks)):
            off = x != np.round(x / dz) * dz
            if np.any(off):
                raise ValueError(f"{name}: exact mode needs exact integer multiples of the atom spacing {dz!r}; "
                                 f"{float(x[off].flat[0])!r} is not. Build the grid with exact_grid (or make_grid), "
                                 "with a spacing that is a power of 2.")  # fmt: skip
    if objective is not None:
        objectives_lib.check_gamma(objective, g)


# --------------------------------------------------------------------------------------
# The distributional Bellman backup on the stock grid
# --------------------------------------------------------------------------------------


def _stock_neighbours(stocks: jax.Array, c: jax.Array):
    """Clip c to the grid and return `(lo, w)`: c sits at `(1-w) stocks[lo] + w stocks[lo+1]`."""
    j = stocks.shape[0]
    dc = stocks[1] - stocks[0]
    pos = (jnp.clip(c, stocks[0], stocks[-1]) - stocks[0]) / dc
    lo = jnp.clip(jnp.floor(pos), 0, j - 2)
    return lo.astype(jnp.int32), pos - lo


def _projection(atoms: jax.Array, reward: jax.Array, gamma) -> jax.Array:
    """`[..., M, M]` matrices: row m is the Cramér projection of `reward + gamma*atoms[m]`
    onto `atoms` (uniform). Exact (one-hot rows) in the exact mode."""
    m = atoms.shape[0]
    dz = atoms[1] - atoms[0]
    y = dist.pushforward(atoms, reward[..., None], gamma)
    pos = (jnp.clip(y, atoms[0], atoms[-1]) - atoms[0]) / dz
    lo = jnp.clip(jnp.floor(pos), 0, m - 2).astype(jnp.int32)
    w = (pos - lo)[..., None]
    return (1 - w) * jax.nn.one_hot(lo, m, dtype=atoms.dtype) + w * jax.nn.one_hot(lo + 1, m, dtype=atoms.dtype)


def backup(mdp, nu: jax.Array, grid: StockGrid, gamma) -> jax.Array:
    """One distributional Bellman backup on the stock grid.

    nu: `[S, J, M]`, the return distribution followed from (s', c_j) (already the
    chosen action's). Returns eta `[S, J, A, M]`:
    `eta(s, c, a) = law(R + gamma Z')`, `Z' ~ nu(S', (c + R)/gamma)`, projected onto the
    atoms; terminal states get the point mass at 0.
    """
    atoms, stocks = grid.atoms, grid.stocks
    if isinstance(mdp, TabularMDP):
        # Rewards are independent of s': mix over s' first, at every grid stock, then
        # read the mixture at each reward's next stock. This is K times cheaper than
        # going through the S*K joint outcomes.
        mixed = jnp.einsum("sat,tjm->sajm", mdp.transitions, nu)  # [S, A, J, M]
        rewards, probs = mdp.reward_values, mdp.reward_probs  # [S, A, K]
        lo, w = _stock_neighbours(stocks, (stocks + rewards[..., None]) / gamma)  # [S, A, K, J]
        S, A = rewards.shape[:2]
        s_idx = jnp.arange(S)[:, None, None, None]
        a_idx = jnp.arange(A)[None, :, None, None]
        wx = w[..., None]
        at_next = (1 - wx) * mixed[s_idx, a_idx, lo] + wx * mixed[s_idx, a_idx, lo + 1]  # [S, A, K, J, M]
    else:
        succ, probs, rewards = outcomes(mdp)  # [S, A, N]
        lo, w = _stock_neighbours(stocks, (stocks + rewards[..., None]) / gamma)  # [S, A, N, J]
        wx = w[..., None]
        at_next = (1 - wx) * nu[succ[..., None], lo] + wx * nu[succ[..., None], lo + 1]
    # Fold the outcome probabilities into the projection matrices and contract over
    # (outcome, atom) in one batched matmul per (s, a).
    proj = probs[..., None, None] * _projection(atoms, rewards, gamma)  # [S, A, K, M, M]
    S, A, K, J, M = at_next.shape
    eta = jnp.matmul(jnp.swapaxes(at_next, 2, 3).reshape(S, A, J, K * M), proj.reshape(S, A, K * M, M))
    eta = jnp.transpose(eta, (0, 2, 1, 3))  # [S, J, A, M]
    zero = dist.dirac(0.0, atoms)
    return jnp.where(mdp.terminal[:, None, None, None], zero, eta)


def utilities(objective: Objective, grid: StockGrid) -> jax.Array:
    """`U[j, m] = f(c_j + z_m)`, `[J, M]`."""
    return objectives_lib.utility(objective, grid.stocks[:, None] + grid.atoms[None, :])


def greedy(eta: jax.Array, util: jax.Array):
    """`q[s, j, a] = E f(c_j + Z)` and `pi[s, j] = argmax_a q` (first maximiser)."""
    q = jnp.einsum("sjam,jm->sja", eta, util)
    return q, jnp.argmax(q, axis=-1).astype(jnp.int32)


def _select(eta: jax.Array, policy: jax.Array) -> jax.Array:
    """`eta[s, j, policy[s, j], :]` -> `[S, J, M]`."""
    return jnp.take_along_axis(eta, policy[:, :, None, None], axis=2)[:, :, 0, :]


def _initial_eta(mdp, grid: StockGrid) -> jax.Array:
    S, A, J = mdp.num_states, mdp.num_actions, grid.num_stocks
    return jnp.broadcast_to(dist.dirac(0.0, grid.atoms), (S, J, A, grid.num_atoms))


# --------------------------------------------------------------------------------------
# Value iteration, policy evaluation, policy iteration
# --------------------------------------------------------------------------------------


def dvi(mdp, objective: Objective, grid: StockGrid, gamma, horizon: int | None = None,
        num_iterations: int | None = None) -> DVIResult:
    """Stock-augmented distributional value iteration (Pires et al. 2025, §4).

    Finite horizon (`horizon=H`): H backups from the point mass at 0 give the exact
    non-stationary optimum; `policy[t]` `[S, J]` acts at time t (H - t steps to go).
    Discounted (`horizon=None`): `num_iterations` backups, stationary greedy `[S, J]`.
    Pure and jittable (horizon, num_iterations static); vmap over mdp/objective/grid.
    """
    util = utilities(objective, grid)

    def step(carry, _):
        eta, pi = carry
        eta = backup(mdp, _select(eta, pi), grid, gamma)
        pi = greedy(eta, util)[1]
        return (eta, pi), (pi if horizon is not None else None)

    n = horizon if horizon is not None else num_iterations
    if n is None:
        raise ValueError("dvi: give horizon=H (finite horizon) or num_iterations=n (discounted).")
    eta0 = _initial_eta(mdp, grid)
    (eta, _), policies = jax.lax.scan(step, (eta0, greedy(eta0, util)[1]), None, length=n)
    q, pi = greedy(eta, util)
    # Scan order is steps-to-go 1..H; time t acts with H - t steps to go.
    policy = policies[::-1] if horizon is not None else pi
    return DVIResult(eta=eta, q=q, policy=policy)


def evaluate_policy(mdp, policy: jax.Array, grid: StockGrid, gamma, horizon: int | None = None,
                    num_iterations: int | None = None, return_all: bool = False) -> jax.Array:
    """Return distribution of a stock-augmented policy, `[S, J, M]`: the law of G from
    (s, c_j) when acting with `policy` (its first action included).

    policy: `[H, S, J]` with `horizon=H` (time-indexed), or stationary `[S, J]` with
    `num_iterations` backups (discounted; converges at rate gamma). With
    `return_all=True` (finite horizon) also returns the state-action distributions for
    every steps-to-go, `[H, S, J, A, M]` (index k-1 for k steps to go), which DPI uses.
    """
    if horizon is not None:
        # Backup k (k steps to go) continues with the decision made at time H - k + 1;
        # the first backup continues from the zero-return end, any action does.
        nexts = jnp.concatenate([policy[:1], policy[1:][::-1]], axis=0)

        def step(eta, pi_next):
            eta = backup(mdp, _select(eta, pi_next), grid, gamma)
            return eta, eta

        eta, etas = jax.lax.scan(step, _initial_eta(mdp, grid), nexts)
        out = _select(eta, policy[0])
        return (out, etas) if return_all else out

    def step(eta, _):
        return backup(mdp, _select(eta, policy), grid, gamma), None

    eta, _ = jax.lax.scan(step, _initial_eta(mdp, grid), None, length=num_iterations)
    return _select(eta, policy)


def start_distribution(mdp, nu: jax.Array, grid: StockGrid, c0) -> jax.Array:
    """Law of G `[M]` from the start-state distribution at stock c0 (interpolated on
    the stock grid), given `nu: [S, J, M]` from `evaluate_policy`."""
    lo, w = _stock_neighbours(grid.stocks, jnp.asarray(c0, grid.stocks.dtype))
    at_c0 = (1 - w) * nu[:, lo] + w * nu[:, lo + 1]  # [S, M]
    return mdp.initial @ at_c0


def objective_value(mdp, q: jax.Array, objective: Objective, grid: StockGrid):
    """Value of the objective at the start and the c_0 it uses: `(value, c0)`.

    `V(c) = sum_s initial[s] max_a q[s, c, a]`. Given c_0: `V(c_0)` (interpolated).
    Optimised c_0 (CVaR): the Rockafellar–Uryasev outer max over the stock grid,
    `max_j { -c_j + V(c_j) / tau }`, whose maximiser is `-VaR_tau`.
    """
    v = mdp.initial @ jnp.max(q, axis=-1)  # [J]
    lo, w = _stock_neighbours(grid.stocks, objective.c0)
    given = (1 - w) * v[lo] + w * v[lo + 1]
    scores = -grid.stocks + v / objective.tau
    j = jnp.argmax(scores)
    value = jnp.where(objective.optimise_c0, scores[j], given)
    c0 = jnp.where(objective.optimise_c0, grid.stocks[j], objective.c0)
    return value, c0


def policy_value(mdp, nu: jax.Array, objective: Objective, grid: StockGrid, c0=None):
    """Objective achieved by an evaluated policy (`nu` from `evaluate_policy`) started at
    c0 (default `objective.c0`): `E f(c0 + G)`, or for CVaR objectives
    `CVaR_tau(G)` of its return law (the exact discrete formula). Returns a scalar."""
    c0 = objective.c0 if c0 is None else c0
    probs = start_distribution(mdp, nu, grid, c0)
    eu = dist.expected_utility(grid.atoms, probs, lambda x: objectives_lib.utility(objective, x), c0)
    return jnp.where(objective.optimise_c0, dist.cvar(grid.atoms, probs, objective.tau), eu)


def dpi(mdp, objective: Objective, grid: StockGrid, gamma, horizon: int | None = None,
        num_policy_iterations: int = 10, num_eval_iterations: int | None = None,
        initial_policy: jax.Array | None = None):
    """Distributional policy iteration: evaluate the stock-augmented policy, improve it
    greedily (`argmax_a E f(c + Z^pi(s, c, a))`), repeat.

    Returns `(policy, values)` with `values: [num_policy_iterations + 1, S, J]`, the
    objective `E f(c_j + G^pi)` from each (s, c_j) of the policy before each
    improvement (and after the last). Improvement is monotone whenever the grid problem
    is exact: in the exact mode (there it is an MDP over (s, c, t) with terminal payoff
    f, and the finite-horizon version reaches the DVI optimum after at most H
    improvements), and e.g. for gamma = 1/2 with integer rewards, a stock grid whose
    points map onto grid points, and f piecewise linear with kinks on the atoms. With
    stock interpolation it is monotone only up to the interpolation error.
    """
    util = utilities(objective, grid)
    S, A, J = mdp.num_states, mdp.num_actions, grid.num_stocks
    if horizon is not None:
        shape = (horizon, S, J)
    else:
        if num_eval_iterations is None:
            raise ValueError("dpi: discounted mode needs num_eval_iterations.")
        shape = (S, J)
    policy = jnp.zeros(shape, jnp.int32) if initial_policy is None else initial_policy

    def values_of(nu):
        return jnp.einsum("sjm,jm->sj", nu, util)

    def iteration(policy, _):
        if horizon is not None:
            nu, etas = evaluate_policy(mdp, policy, grid, gamma, horizon=horizon, return_all=True)
            # Time t acts with H - t steps to go: the improved policy at t is greedy on
            # the evaluated state-action distributions with that many steps to go.
            new = jax.vmap(lambda e: greedy(e, util)[1])(etas[::-1])
        else:
            eta = backup(mdp, evaluate_policy(mdp, policy, grid, gamma, num_iterations=num_eval_iterations), grid, gamma)
            nu = _select(eta, policy)
            new = greedy(eta, util)[1]
        return new, values_of(nu)

    policy, values = jax.lax.scan(iteration, policy, None, length=num_policy_iterations)
    if horizon is not None:
        last = evaluate_policy(mdp, policy, grid, gamma, horizon=horizon)
    else:
        last = evaluate_policy(mdp, policy, grid, gamma, num_iterations=num_eval_iterations)
    return policy, jnp.concatenate([values, values_of(last)[None]], axis=0)


def dvi_without_stock(mdp, risk, grid: StockGrid, gamma, horizon: int):
    """Baseline: greedy on a functional of the return-to-go *without* a stock.

    `pi_t(s) = argmax_a risk(Z_t(s, a))` with `Z_t(s, a) = law(R + gamma Z_{t+1}(S',
    pi_{t+1}(S')))` — e.g. `risk = lambda z, p: cvar(z, p, tau)`: the naive, time-
    inconsistent CVaR-greedy agent without a stock. `grid.stocks` is ignored. Returns `(policy [H, S], eta [S, A, M])`; with `risk = mean` it is
    risk-neutral DP.
    """
    # Two grid stocks holding identical copies (the rule ignores the stock); two because
    # interpolation needs a nonzero spacing.
    single = StockGrid(atoms=grid.atoms, stocks=jnp.arange(2, dtype=grid.atoms.dtype))

    def pick(eta):  # eta: [S, J, A, M] with J = 2 identical copies
        scores = jax.vmap(jax.vmap(lambda p: risk(grid.atoms, p)))(eta[:, 0])
        return jnp.broadcast_to(jnp.argmax(scores, -1)[:, None], eta.shape[:2]).astype(jnp.int32)

    def step(eta, _):
        eta = backup(mdp, _select(eta, pick(eta)), single, gamma)
        return eta, pick(eta)[:, 0]

    eta, policies = jax.lax.scan(step, _initial_eta(mdp, single), None, length=horizon)
    return policies[::-1], eta[:, 0]


def solve(mdp, objective: Objective, grid: StockGrid, gamma, horizon: int | None = None,
          num_iterations: int | None = None, exact: bool = False):
    """Validate (host-side), then run the jitted DVI and return
    `(DVIResult, value, c0)` with the objective's value at the start."""
    validate(mdp, grid, gamma, horizon, objective, exact=exact, num_iterations=num_iterations)
    result = _dvi_jit(mdp, objective, grid, gamma, horizon=horizon, num_iterations=num_iterations)
    value, c0 = jax.jit(objective_value)(mdp, result.q, objective, grid)
    return result, value, c0


_dvi_jit = jax.jit(dvi, static_argnames=("horizon", "num_iterations"))
