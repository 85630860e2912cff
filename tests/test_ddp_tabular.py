"""Stock-augmented DVI/DPI on finite MDPs against brute-force oracles (ddp.md)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import distributional as dist
from rlx.agents.ddp import objectives as O
from rlx.agents.ddp import oracle
from rlx.agents.ddp import tabular as T
from rlx.envs.tabular import (
    ENVS, astype, ddp_grid, layered_mdp, make_mdp, random_mdp, to_sparse,
)  # fmt: skip

H = 4
NUM_MDPS = 24
TAUS = (0.1, 0.25, 0.5, 1.0)
THRESHOLDS = (-2.0, 0.0, 1.0, 3.0)


def f64(tree):
    return astype(tree, jnp.float64)


def take(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


@pytest.fixture(scope="module")
def exact_random():
    """24 random MDPs (3 states, 2 actions, 2 integer reward outcomes in [-2, 2]) and
    exact-mode DVI for a population of CVaR and threshold objectives, in float64."""
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(0), NUM_MDPS)
        mdps = f64(jax.vmap(lambda k: random_mdp(k, 3, 2, 2, -2, 2))(keys))
        grid = f64(T.exact_grid(mdps, H))
        objs = f64(O.stack([O.cvar(t) for t in TAUS] + [O.threshold(g) for g in THRESHOLDS]))
        T.validate(mdps, grid, 1.0, H, objs, exact=True)

        def one(mdp, obj):
            res = T.dvi(mdp, obj, grid, 1.0, horizon=H)
            value, c0 = T.objective_value(mdp, res.q, obj, grid)
            nu = T.evaluate_policy(mdp, res.policy, grid, 1.0, horizon=H)
            achieved = T.policy_value(mdp, nu, obj, grid, c0)
            return value, achieved, res.q

        run = jax.jit(jax.vmap(jax.vmap(one, (None, 0)), (0, None)))
        value, achieved, q = jax.device_get(run(mdps, objs))
    return dict(mdps=mdps, grid=grid, objs=objs, value=value, achieved=achieved, q=q)


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
    for i in range(NUM_MDPS):
        mdp = take(r["mdps"], i)
        best = oracle.optimal_values(mdp, f, [-g for g in THRESHOLDS], 1.0, H)
        k0 = len(TAUS)
        np.testing.assert_allclose(r["value"][i, k0:], best, atol=1e-9, rtol=0)
        np.testing.assert_allclose(r["achieved"][i, k0:], best, atol=1e-9, rtol=0)
    # Not a trivial comparison: the optimal reach probabilities are not all 0 or 1.
    v = r["value"][:, len(TAUS):]
    assert np.any((v > 1e-3) & (v < 1 - 1e-3))


def test_dvi_equals_oracle_terminal_and_non_hinge():
    """Layered MDPs with a terminal sink, and objectives that are not hinge-type
    (-x^2, exp utility, a kink off 0): with gamma = 1 every expected utility works,
    provided the stock grid covers c_0 + every return (no clipping)."""
    horizon = 3
    with jax.enable_x64(True):
        mdps = f64(jax.vmap(lambda k: layered_mdp(k, 2, 2, 2, 2, -2, 2))(jax.random.split(jax.random.key(3), 4)))
        objs = [O.neg_square(1.0), O.exp_utility(0.5, c0=-1.0), O.piecewise_linear(2.0, 2.0, 0.5, c0=-1.0),
                O.target(2.0)]
        objs = f64(O.stack(objs))
        grid = f64(T.exact_grid(mdps, horizon, c0_range=(-1.0, -1.0)))
        T.validate(mdps, grid, 1.0, horizon, objs, exact=True)
        run = jax.jit(jax.vmap(jax.vmap(
            lambda m, o: T.objective_value(m, T.dvi(m, o, grid, 1.0, horizon=horizon).q, o, grid)[0],
            (None, 0)), (0, None)))
        values = np.asarray(run(mdps, objs))
        for i in range(4):
            for k in range(4):
                obj = take(objs, k)
                best = oracle.optimal_values(take(mdps, i), oracle.numpy_utility(obj), [float(obj.c0)], 1.0, horizon)
                assert abs(values[i, k] - best[0]) < 1e-9, (i, O.name(obj))


def test_oracle_expectimax_equals_enumerating_policies():
    """The oracle's tree maximum equals literally listing every history-dependent
    deterministic policy (2^7 of them per MDP), for CVaR and a threshold."""
    for seed in range(4):
        mdp = jax.device_get(random_mdp(jax.random.key(100 + seed), 2, 2, 2, -2, 2, branching=1))
        for tau in (0.2, 0.6):
            brute = oracle.best_by_enumeration(mdp, lambda g, p: oracle.cvar_numpy(g, p, tau), 1.0, 2)
            assert abs(oracle.optimal_cvar(mdp, tau, 1.0, 2) - brute) < 1e-12
        brute = oracle.best_by_enumeration(mdp, lambda g, p: float(p @ (g >= 1)), 1.0, 2)
        assert abs(oracle.optimal_values(mdp, lambda x: (x >= 0) * 1.0, [-1.0], 1.0, 2)[0] - brute) < 1e-12


def test_dense_and_sparse_forms_agree(exact_random):
    r = exact_random
    with jax.enable_x64(True):
        for i in range(3):
            mdp = take(r["mdps"], i)
            sparse = to_sparse(mdp)
            obj = take(r["objs"], 1)
            q_sparse = T.dvi(sparse, obj, r["grid"], 1.0, horizon=H).q
            np.testing.assert_allclose(q_sparse, r["q"][i, 1], atol=1e-12)


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
    """Discounted mode (gamma = 0.8, stock grid with interpolation): DPI is monotone
    on the grid problem and its fixed point equals many-iteration DVI's value."""
    gamma = 0.8
    mdps = jax.vmap(lambda k: random_mdp(k, 3, 2, 2, -1, 1))(jax.random.split(jax.random.key(7), 4))
    lo, hi = T.safe_stock_range(mdps, gamma, None)
    grid = T.make_grid(-5.0, 5.0, 41, lo, hi, 21)
    obj = O.target(0.5)
    T.validate(mdps, grid, gamma, None, obj)

    def one(m):
        _, values = T.dpi(m, obj, grid, gamma, num_policy_iterations=6, num_eval_iterations=120)
        v_dvi = T.dvi(m, obj, grid, gamma, num_iterations=120).q.max(-1)
        return values, v_dvi

    values, v_dvi = jax.jit(jax.vmap(one))(mdps)
    assert np.all(np.diff(np.asarray(values), axis=1) >= -1e-5)
    np.testing.assert_allclose(values[:, -1], v_dvi, atol=1e-4)


def test_batched_equals_looped():
    mdps = jax.vmap(lambda k: random_mdp(k, 4, 3, 2, -2, 2))(jax.random.split(jax.random.key(1), 3))
    grid = T.exact_grid(mdps, 3)
    objs = O.stack([O.cvar(0.3), O.target(1.0), O.threshold(2.0), O.identity()])
    f = jax.jit(lambda m, o: T.dvi(m, o, grid, 1.0, horizon=3))
    batched = jax.jit(jax.vmap(jax.vmap(f, (None, 0)), (0, None)))(mdps, objs)
    for i in range(3):
        for k in range(4):
            looped = f(take(mdps, i), take(objs, k))
            np.testing.assert_allclose(batched.q[i, k], looped.q, atol=1e-5)
            np.testing.assert_array_equal(batched.policy[i, k], looped.policy)


def test_no_stock_cvar_greedy_is_worse_somewhere(exact_random):
    """Greedy CVaR without a stock is never better than stock DVI, and strictly worse on
    some MDPs (ddp.md: only the mean and exponential utility work without a stock)."""
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
    """The 4x4 grid of ddp.md: exact DVI with f = -|x|, c_0 = -target, gives a policy
    whose return is exactly the target, for every integer target in [-13, 26]."""
    mdp = ddp_grid()
    horizon = 16
    grid = T.exact_grid(mdp, horizon)
    obj = O.target(0.0)  # the stock grid holds every c_0 = -target at once
    result, _, _ = T.solve(mdp, obj, grid, 1.0, horizon=horizon, exact=True)
    nu = jax.jit(T.evaluate_policy, static_argnames="horizon")(mdp, result.policy, grid, 1.0, horizon=horizon)
    for target in range(-13, 27):
        p = np.asarray(T.start_distribution(mdp, nu, grid, -float(target)))
        assert p[np.asarray(grid.atoms) == target].item() == pytest.approx(1.0, abs=1e-6), target
    # 27 is out of reach: 3 steps to the +2 cell, then 13 more steps there give 26.
    p = np.asarray(T.start_distribution(mdp, nu, grid, -27.0))
    assert p @ np.asarray(grid.atoms) == pytest.approx(26.0, abs=1e-5)


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
    for i in range(5):
        a = env.action_space(params).sample(jax.random.key(i))
        obs, state, r, term, trunc, info = step(jax.random.key(10 + i), state, a, params)
        assert obs.shape == (env.num_states,) and r.shape == () and "final_obs" in info
        assert not (bool(term) and bool(trunc))


def test_env_matches_mdp_outcomes():
    """Empirical next-state/reward frequencies of `to_gymnax` match the MDP."""
    env, params = ENVS["rlx/ddp-grid-bernoulli"]()
    mdp = params.mdp
    state = env.reset(jax.random.key(0), params)[1].replace(state=jnp.asarray(2, jnp.int32))  # (0, 2)
    keys = jax.random.split(jax.random.key(1), 4000)
    _, _, r, _, _, info = jax.vmap(lambda k: env.step(k, state, 3, params))(keys)  # move right
    assert set(np.unique(np.asarray(info["state"]))) == {3}
    assert abs(float(np.mean(np.asarray(r) == 4.0)) - 0.5) < 0.04
    assert float(mdp.successor_probs[2, 3].sum()) == pytest.approx(1.0)
