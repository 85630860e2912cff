"""Stock-augmented DVI/DPI on finite MDPs against brute-force oracles."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlx import distributional as dist
from rlx.agents.ddp import objectives as O
from rlx.agents.ddp import oracle
from rlx.agents.ddp import tabular as T
from rlx.envs.tabular import (
    ENVS, achievable_returns, ddp_grid, make_mdp, random_mdp, risky_grid, to_sparse,
)  # fmt: skip

H = 4
NUM_MDPS = 24
TAUS = (0.1, 0.25, 0.5, 1.0)
THRESHOLDS = (-2.0, 0.0, 1.0, 3.0)


def take(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


NON_HINGE = ("neg_square", "exp_utility", "piecewise_linear", "neg_abs")


def _objectives():
    """CVaR levels, thresholds, and objectives that are not hinge-type (plus a target),
    for which only gamma = 1 and an unclipped stock grid give the optimum."""
    return O.stack(
        [O.cvar(t) for t in TAUS] + [O.threshold(g) for g in THRESHOLDS]
        + [O.neg_square(1.0), O.exp_utility(0.5, c0=-1.0), O.piecewise_linear(2.0, 2.0, 0.5, c0=-1.0),
           O.target(2.0)]
    )


def _one(grid):
    def one(mdp, obj):
        res = T.dvi(mdp, obj, grid, 1.0, horizon=H)
        value, c0 = T.objective_value(mdp, res.q, obj, grid)
        nu = T.evaluate_policy(mdp, res.policy, grid, 1.0, horizon=H)
        achieved = T.policy_value(mdp, nu, obj, grid, c0)
        return value, achieved, res.q

    return one


@pytest.fixture(scope="module")
def exact_random():
    """24 random MDPs (3 states, 2 actions, 2 integer reward outcomes in [-2, 2]; in half
    of them state 2 is terminal) and exact-mode DVI for a population of objectives,
    all in float64, in one jit(vmap(vmap))."""
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(0), NUM_MDPS)
        half = NUM_MDPS // 2
        a = jax.vmap(lambda k: random_mdp(k, 3, 2, 2, -2, 2))(keys[:half])
        b = jax.vmap(lambda k: random_mdp(k, 3, 2, 2, -2, 2, num_terminal=1))(keys[half:])
        mdps = jax.tree.map(lambda x, y: jnp.concatenate([x, y]), a, b)
        grid = T.exact_grid(mdps, H, c0_range=(-1.0, -1.0))
        objs = _objectives()
        T.validate(mdps, grid, 1.0, H, objs, exact=True)
        one = _one(grid)
        run = jax.jit(jax.vmap(jax.vmap(one, (None, 0)), (0, None)))
        value, achieved, q = jax.device_get(run(mdps, objs))
    return dict(mdps=mdps, grid=grid, objs=objs, value=value, achieved=achieved, q=q, one=one)


def test_dvi_equals_oracle_cvar(exact_random):
    r = exact_random
    for i in range(NUM_MDPS):
        mdp = take(r["mdps"], i)
        for k, tau in enumerate(TAUS):
            best = oracle.optimal_cvar(mdp, tau, 1.0, H)
            assert abs(r["value"][i, k] - best) < 1e-9, (i, tau)
            # The (s, c) policy DVI extracts, evaluated exactly from c_0* = -VaR, attains it.
            assert abs(r["achieved"][i, k] - best) < 1e-9, (i, tau)


def test_dvi_equals_oracle_threshold(exact_random):
    r = exact_random
    f = lambda x: (x >= 0).astype(np.float64)
    k0 = len(TAUS)
    for i in range(NUM_MDPS):
        mdp = take(r["mdps"], i)
        best = oracle.optimal_values(mdp, f, [-g for g in THRESHOLDS], 1.0, H)
        np.testing.assert_allclose(r["value"][i, k0:k0 + 4], best, atol=1e-9, rtol=0)
        np.testing.assert_allclose(r["achieved"][i, k0:k0 + 4], best, atol=1e-9, rtol=0)
    # Not a trivial comparison: the optimal reach probabilities are not all 0 or 1.
    v = r["value"][:, k0:k0 + 4]
    assert np.any((v > 1e-3) & (v < 1 - 1e-3))


def test_dvi_equals_oracle_non_hinge(exact_random):
    """-x^2, exp utility, a kink off 0, and -|x|: with gamma = 1 every expected utility
    works, provided the stock grid covers c_0 + every return (nothing clipped)."""
    r = exact_random
    k0 = len(TAUS) + len(THRESHOLDS)
    for k in range(k0, k0 + len(NON_HINGE)):
        obj = take(r["objs"], k)
        assert O.name(obj) == NON_HINGE[k - k0]
        f = oracle.numpy_utility(obj)
        for i in range(NUM_MDPS):
            best = oracle.optimal_values(take(r["mdps"], i), f, [float(obj.c0)], 1.0, H)[0]
            assert abs(r["value"][i, k] - best) < 1e-9, (i, O.name(obj))
            assert abs(r["achieved"][i, k] - best) < 1e-9, (i, O.name(obj))


def test_oracle_expectimax_equals_enumerating_policies():
    """The oracle's tree maximum equals literally listing every history-dependent
    deterministic policy (2^7 of them per MDP), for CVaR and a threshold."""
    rng = np.random.default_rng(0)
    for _ in range(3):
        P = rng.dirichlet(np.ones(2), (2, 2))
        mdp = make_mdp(P, reward_values=rng.integers(-2, 3, (2, 2, 1)), reward_probs=np.ones((2, 2, 1)))
        for tau in (0.2, 0.6):
            brute = oracle.best_by_enumeration(mdp, lambda g, p: oracle.cvar_numpy(g, p, tau), 1.0, 2)
            assert abs(oracle.optimal_cvar(mdp, tau, 1.0, 2) - brute) < 1e-6
        brute = oracle.best_by_enumeration(mdp, lambda g, p: float(p @ (g >= 1)), 1.0, 2)
        assert abs(oracle.optimal_values(mdp, lambda x: (x >= 0) * 1.0, [-1.0], 1.0, 2)[0] - brute) < 1e-6


def test_dense_and_sparse_forms_agree(exact_random):
    r = exact_random
    i = NUM_MDPS - 1  # one with a terminal state
    with jax.enable_x64(True):
        sparse = to_sparse(take(r["mdps"], i))
        for k in (1, 5):
            value, achieved, q = jax.jit(r["one"])(sparse, take(r["objs"], k))
            np.testing.assert_allclose(q, r["q"][i, k], atol=1e-12)
            assert abs(achieved - r["achieved"][i, k]) < 1e-12


def test_dpi_monotone_and_reaches_dvi(exact_random):
    r = exact_random
    with jax.enable_x64(True):
        run = jax.jit(jax.vmap(lambda m, o: T.dpi(m, o, r["grid"], 1.0, horizon=H, num_policy_iterations=H + 1)[1],
                               (0, None)))
        for k in (1, len(TAUS) + 1):  # cvar(0.25) (its inner problem) and threshold(0)
            obj = take(r["objs"], k)
            values = np.asarray(run(r["mdps"], obj))  # [B, iters + 1, S, J]
            assert np.all(np.diff(values, axis=1) >= -1e-12), "policy improvement decreased a value"
            np.testing.assert_allclose(values[:, -1], r["q"][:, k].max(-1), atol=1e-9)
            # The initial policy (always action 0) was not already optimal everywhere.
            assert np.any(values[:, -1] > values[:, 0] + 1e-6)


def test_discounted_dpi_monotone_and_matches_dvi():
    """Discounted mode with gamma = 1/2, integer rewards and a stock grid aligned with the
    atoms: next stocks 2(c + r) land on grid points and f = -|x| is linear between atoms,
    so the grid problem is exact for f; DPI is then monotone and its fixed point is DVI's.
    """
    gamma = 0.5
    mdps = jax.vmap(lambda k: random_mdp(k, 3, 2, 2, -1, 1))(jax.random.split(jax.random.key(7), 4))
    lo, hi = T.safe_stock_range(mdps, gamma, None)  # [-2, 2]
    grid = T.make_grid(-2.0, 2.0, 41, lo, hi, 21)
    obj = O.target(0.4)
    T.validate(mdps, grid, gamma, None, obj)

    def one(m):
        _, values = T.dpi(m, obj, grid, gamma, num_policy_iterations=5, num_eval_iterations=60)
        v_dvi = T.dvi(m, obj, grid, gamma, num_iterations=60).q.max(-1)
        return values, v_dvi

    values, v_dvi = jax.jit(jax.vmap(one))(mdps)
    values = np.asarray(values)
    assert np.all(np.diff(values, axis=1) >= -1e-5)
    assert np.any(values[:, -1] > values[:, 0] + 1e-2)
    np.testing.assert_allclose(values[:, -1], v_dvi, atol=1e-5)


def test_batched_equals_looped(exact_random):
    """The jit(vmap(vmap)) population equals single runs, one MDP and objective at a time."""
    r = exact_random
    with jax.enable_x64(True):
        single = jax.jit(r["one"])
        for i, k in [(0, 0), (3, 5), (NUM_MDPS - 1, 9), (7, 11)]:
            value, achieved, q = single(take(r["mdps"], i), take(r["objs"], k))
            np.testing.assert_allclose(q, r["q"][i, k], atol=1e-12)
            assert abs(value - r["value"][i, k]) < 1e-12 and abs(achieved - r["achieved"][i, k]) < 1e-12


def test_no_stock_cvar_greedy_is_worse_somewhere(exact_random):
    """Greedy CVaR without a stock is never better than stock DVI, and strictly worse on
    some MDPs (without a stock, only the mean and exponential utility can be optimised exactly)."""
    r = exact_random
    tau, k = 0.25, 1
    grid = r["grid"]
    with jax.enable_x64(True):

        def naive(mdp):
            pol, _ = T.dvi_without_stock(mdp, lambda z, p: dist.cvar(z, p, tau), grid, 1.0, H)
            pol = jnp.broadcast_to(pol[:, :, None], pol.shape + (grid.num_stocks,))
            nu = T.evaluate_policy(mdp, pol, grid, 1.0, horizon=H)
            return dist.cvar(grid.atoms, T.start_distribution(mdp, nu, grid, 0.0), tau)

        naive_cvar = np.asarray(jax.jit(jax.vmap(naive))(r["mdps"]))
    stock_cvar = r["value"][:, k]
    assert np.all(naive_cvar <= stock_cvar + 1e-9)
    assert np.sum(naive_cvar < stock_cvar - 1e-3) >= 1


def test_grid_generates_every_achievable_return():
    """The 4x4 grid (`ddp_grid`): exact DVI with f = -|x| and c_0 = -target returns exactly
    the target whenever some action sequence can, and otherwise the closest achievable
    return, for every integer target in [-20, 30] (from one DVI over the stock grid)."""
    mdp = ddp_grid()
    horizon = 16
    grid = T.exact_grid(mdp, horizon, c0_range=(-30.0, 20.0))
    result, _, _ = T.solve(mdp, O.target(0.0), grid, 1.0, horizon=horizon, exact=True)
    nu = jax.jit(T.evaluate_policy, static_argnames="horizon")(mdp, result.policy, grid, 1.0, horizon=horizon)
    achievable = achievable_returns(mdp, horizon)
    atoms = np.asarray(grid.atoms)
    assert 26.0 in achievable and 25.0 not in achievable  # odd returns above 15 need too many steps
    for target in range(-20, 31):
        p = np.asarray(T.start_distribution(mdp, nu, grid, -float(target)))
        gap = np.min(np.abs(achievable - target))
        assert p @ np.abs(atoms - target) == pytest.approx(gap, abs=1e-5), target
        if gap == 0:
            assert p[atoms == target].item() == pytest.approx(1.0, abs=1e-6), target


# --------------------------------------------------------------------------------------
# Bad input: a ValueError naming the field, before anything compiles
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    mdp = random_mdp(jax.random.key(5), 3, 2, 2, -2, 2)
    return mdp, T.exact_grid(mdp, 3)


@pytest.mark.parametrize("gamma", [0.0, -0.5, 1.5, float("nan")])
def test_bad_gamma(small, gamma):
    mdp, grid = small
    with pytest.raises(ValueError, match=r"gamma: must be in \(0, 1\]"):
        T.solve(mdp, O.cvar(0.5), grid, gamma, horizon=3)


def test_infinite_horizon_needs_discount(small):
    mdp, grid = small
    with pytest.raises(ValueError, match="horizon"):
        T.solve(mdp, O.cvar(0.5), grid, 1.0, horizon=None, num_iterations=10)


def test_rows_not_summing_to_one():
    P = np.full((2, 2, 2), 0.5)
    P[1, 0] = [0.7, 0.7]
    with pytest.raises(ValueError, match=r"mdp.transitions: .*sum to 1.*\(1, 0\)"):
        make_mdp(P, rewards=np.zeros((2, 2)))
    mdp = random_mdp(jax.random.key(0), 2, 2)
    bad = mdp.replace(reward_probs=mdp.reward_probs * 0.5)
    with pytest.raises(ValueError, match="mdp.reward_probs"):
        T.validate(bad, T.exact_grid(mdp, 2), 1.0, 2)


def test_rewards_outside_atom_support(small):
    mdp, grid = small
    narrow = T.StockGrid(atoms=grid.atoms[2:-2], stocks=grid.stocks)
    with pytest.raises(ValueError, match="grid.atoms: rewards in .* outside the atom support"):
        T.solve(mdp, O.cvar(0.5), narrow, 1.0, horizon=3)


def test_stock_grid_too_small(small):
    mdp, grid = small
    narrow = T.StockGrid(atoms=grid.atoms, stocks=grid.stocks[3:])
    with pytest.raises(ValueError, match="grid.stocks: spans"):
        T.solve(mdp, O.cvar(0.5), narrow, 1.0, horizon=3)
    # A given c_0 outside the grid cannot be covered either.
    with pytest.raises(ValueError, match="grid.stocks"):
        T.solve(mdp, O.target(100.0), grid, 1.0, horizon=3)
    # Non-hinge f with gamma = 1 needs c_0 + every return on the grid.
    with pytest.raises(ValueError, match="grid.stocks"):
        T.solve(mdp, O.neg_square(5.0), grid, 1.0, horizon=3)


def test_exact_mode_rejects_inexact_inputs(small):
    mdp, grid = small
    with pytest.raises(ValueError, match="gamma: exact mode"):
        T.validate(mdp, T.make_grid(-20, 20, 41, -20, 20, 41), 0.9, 3, exact=True)
    half = mdp.replace(reward_values=mdp.reward_values + 0.5)
    with pytest.raises(ValueError, match="rewards: exact mode"):
        T.validate(half, T.exact_grid(half, 3), 1.0, 3, exact=True)


def test_make_grid_is_exact_under_x64_so_exact_mode_is_exact():
    """Under float64, jnp.linspace's grids held 1.9999999999999996 for 2; exact mode took
    them, and the threshold utility then saw c + z = -4.4e-16 < 0. A one-decision MDP
    whose safe action reaches the threshold surely was solved as a coin flip."""
    with jax.enable_x64(True):
        P = np.zeros((2, 2, 2))
        P[:, :, 1] = 1
        rv = np.zeros((2, 2, 2))
        rv[0, 0], rv[0, 1] = [-2, -2], [-3, 5]  # action 0: -2 surely; action 1: -3 or 5
        mdp = make_mdp(P, reward_values=rv, reward_probs=np.full((2, 2, 2), 0.5), terminal=[False, True])
        assert mdp.reward_values.dtype == jnp.float64 and mdp.transitions.dtype == jnp.float64
        grid = T.make_grid(-3, 5, 9, -7, 7, 15)
        np.testing.assert_array_equal(np.asarray(grid.stocks), np.arange(-7.0, 8.0))
        np.testing.assert_array_equal(np.asarray(grid.atoms), np.arange(-3.0, 6.0))
        result, value, c0 = T.solve(mdp, O.threshold(-2.0), grid, 1.0, horizon=1, exact=True)
        assert float(value) == 1.0
        j = int(np.flatnonzero(np.asarray(grid.stocks) == float(c0))[0])
        assert int(result.policy[0, 0, j]) == 0
        _, by_exact_grid, _ = T.solve(mdp, O.threshold(-2.0), T.exact_grid(mdp, 1, c0_range=(2.0, 2.0)), 1.0,
                                      horizon=1, exact=True)  # fmt: skip
        assert float(by_exact_grid) == 1.0
        # A grid that is only close to whole numbers is refused in exact mode, naming it.
        close = T.StockGrid(atoms=grid.atoms, stocks=jnp.asarray(np.arange(-7.0, 8.0)) * (1 - 2**-52))
        with pytest.raises(ValueError, match=r"grid\.stocks: exact mode needs exact integer multiples"):
            T.validate(mdp, close, 1.0, 1, O.threshold(-2.0), exact=True)
        # Random 3-state MDPs at H = 3: make_grid and exact_grid give the brute-force optimum.
        keys = jax.random.split(jax.random.key(3), 8)
        for k in keys:
            mdp = random_mdp(k, 3, 2, 2, -2, 2)
            best = oracle.optimal_values(mdp, lambda x: (x >= 0).astype(np.float64), [-1.0], 1.0, 3)[0]
            for grid in (T.make_grid(-6, 6, 13, -6, 6, 13), T.exact_grid(mdp, 3)):
                _, value, _ = T.solve(mdp, O.threshold(1.0), grid, 1.0, horizon=3, exact=True)
                assert abs(float(value) - best) < 1e-12


def test_objective_needing_gamma_one_warns(small):
    mdp, _ = small
    grid = T.make_grid(-12, 12, 25, -12, 12, 25)
    with pytest.warns(UserWarning, match="not scale-consistent"):
        T.validate(mdp, grid, 0.9, 3, O.exp_utility(1.0))
    with pytest.warns(UserWarning, match="not scale-consistent"):
        T.validate(mdp, grid, 0.9, 3, O.piecewise_linear(kink=1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        T.validate(mdp, grid, 0.9, 3, O.stack([O.cvar(0.1), O.piecewise_linear(0.0), O.neg_square()]))
        T.validate(mdp, grid, 1.0, 3, O.exp_utility(1.0))


def test_bad_objective_parameters():
    with pytest.raises(ValueError, match="tau"):
        O.cvar(0.0)
    with pytest.raises(ValueError, match="lam"):
        O.exp_utility(-1.0)


# --------------------------------------------------------------------------------------
# The tabular envs on rlx's env interface
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ENVS))
def test_tabular_envs_conform(name):
    env, params = ENVS[name]()
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.shape == env.observation_space(params).shape
    step = jax.jit(env.step)
    for i in range(3):
        a = env.action_space(params).sample(jax.random.key(i))
        obs, state, r, term, trunc, info = step(jax.random.key(10 + i), state, a, params)
        assert obs.shape == (env.num_states,) and r.shape == () and "final_obs" in info
        assert not (bool(term) and bool(trunc))


def test_env_matches_mdp_outcomes():
    """Empirical next-state/reward frequencies of `to_env` match the MDP."""
    env, params = ENVS["rlx/ddp-grid-bernoulli"]()
    mdp = params.mdp
    state = env.reset(jax.random.key(0), params)[1].replace(state=jnp.asarray(2, jnp.int32))  # (0, 2)
    keys = jax.random.split(jax.random.key(1), 2000)
    _, _, r, _, _, info = jax.vmap(lambda k: env.step(k, state, 3, params))(keys)  # move right
    assert set(np.unique(np.asarray(info["state"]))) == {3}
    assert abs(float(np.mean(np.asarray(r) == 4.0)) - 0.5) < 0.04
    assert float(mdp.successor_probs[2, 3].sum()) == pytest.approx(1.0)


def test_exact_return_laws_live_on_the_brute_force_returns():
    # Two independent computations on a stochastic grid: the exact return law of a DVI
    # policy (a distributional DP) can only put mass on returns some action sequence
    # reaches with positive probability (forward-set enumeration), and the optimal
    # risk-neutral policy's mass is on more than one of them (the slip is real).
    mdp, horizon = risky_grid(slip=0.2), 10
    grid = T.exact_grid(mdp, horizon)
    reachable = achievable_returns(mdp, horizon)
    assert reachable.min() == -13.0 and reachable.max() == 7.0
    for objective in (O.identity(), O.cvar(0.25)):
        result, _, c0 = T.solve(mdp, objective, grid, 1.0, horizon=horizon, exact=True)
        nu = T.evaluate_policy(mdp, result.policy, grid, 1.0, horizon=horizon)
        law = np.asarray(T.start_distribution(mdp, nu, grid, float(c0)), np.float64)
        support = np.asarray(grid.atoms)[law > 1e-9]
        assert np.isin(support, reachable).all(), sorted(set(support) - set(reachable))
        assert len(support) > 1


@st.composite
def _small_integer_mdp(draw):
    """2 states and 2 actions, 2 integer reward outcomes in [-2, 2] per (s, a), random
    rational transition and outcome probabilities, state 1 terminal or not."""
    weights = st.integers(1, 4)
    P = np.array(draw(st.lists(weights, min_size=8, max_size=8)), np.float64).reshape(2, 2, 2)
    P /= P.sum(-1, keepdims=True)
    values = np.array(draw(st.lists(st.integers(-2, 2), min_size=8, max_size=8)), np.float64).reshape(2, 2, 2)
    probs = np.array(draw(st.lists(weights, min_size=8, max_size=8)), np.float64).reshape(2, 2, 2)
    probs /= probs.sum(-1, keepdims=True)
    terminal = [False, draw(st.booleans())]
    return dict(transitions=P, reward_values=values, reward_probs=probs, terminal=terminal)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(_small_integer_mdp(), st.sampled_from([0.1, 0.3, 0.5, 0.8, 1.0]), st.integers(-3, 3),
       st.integers(-5, -4), st.integers(-10, -8))
def test_exact_dvi_equals_enumerating_history_dependent_policies(arrays, tau, theta, v_min, c_min):
    """Property: on random 2-state MDPs at H = 2, exact-mode DVI on an integer grid from
    `make_grid` (random integer ends) gives the same CVaR_tau and P(G >= theta) as listing
    every history-dependent deterministic policy and taking the best exact law."""
    with jax.enable_x64(True):
        mdp = make_mdp(**arrays)
        # Returns lie in [-4, 4]; the stocks c0 + G the policies meet lie in [-8, 8]. The
        # grids' ends move, their sizes don't (one compile).
        grid = T.make_grid(v_min, v_min + 9, 10, c_min, c_min + 18, 19)
        _, cvar_value, _ = T.solve(mdp, O.cvar(tau), grid, 1.0, horizon=2, exact=True)
        _, reach, _ = T.solve(mdp, O.threshold(float(theta)), grid, 1.0, horizon=2, exact=True)
        best_cvar = oracle.best_by_enumeration(mdp, lambda g, p: oracle.cvar_numpy(g, p, tau), 1.0, 2)
        best_reach = oracle.best_by_enumeration(mdp, lambda g, p: float(p @ (g >= theta)), 1.0, 2)
    assert abs(float(cvar_value) - best_cvar) < 1e-12, (tau, float(cvar_value), best_cvar)
    assert abs(float(reach) - best_reach) < 1e-12, (theta, float(reach), best_reach)
