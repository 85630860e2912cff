"""rlx.distributional: projections, metrics, functionals and losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax
import scipy.stats

from rlx import distributional as dist


def random_atoms(rng, n, lo=-3.0, hi=3.0):
    x = rng.uniform(lo, hi, n).astype(np.float32)
    p = rng.dirichlet(np.ones(n)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(p)


# --------------------------------------------------------------------------------------
# Projections
# --------------------------------------------------------------------------------------


def test_categorical_project_matches_rlax():
    rng = np.random.default_rng(0)
    project = jax.jit(dist.categorical_project)
    for i in range(20):
        x, p = random_atoms(rng, 13, -4, 4)  # fixed shapes: two compiles, not twenty
        # Uniform and non-uniform target supports (rlax handles both).
        z = jnp.linspace(-3.0, 3.0, 11) if i % 2 else jnp.asarray(np.sort(rng.uniform(-3, 3, 9)).astype(np.float32))
        np.testing.assert_allclose(project(x, p, z), rlax.categorical_l2_project(x, p, z), atol=1e-6)


def test_categorical_project_conserves_mass_and_mean():
    rng = np.random.default_rng(1)
    z = jnp.linspace(-5.0, 5.0, 21)
    for _ in range(20):
        x, p = random_atoms(rng, 17, -5, 5)  # inside the support: the mean is kept
        q = dist.categorical_project(x, p, z)
        assert float(q.sum()) == pytest.approx(1.0, abs=1e-6)
        assert float(jnp.all(q >= 0))
        assert float(q @ z) == pytest.approx(float(p @ x), abs=1e-5)
    # Outside the support, mass is clipped to the ends: still conserved, mean moves.
    q = dist.categorical_project(jnp.array([-9.0, 9.0]), jnp.array([0.25, 0.75]), z)
    assert float(q.sum()) == pytest.approx(1.0) and float(q[0]) == 0.25 and float(q[-1]) == 0.75


def test_quantile_project_is_quantile_function():
    x, p = jnp.array([0.0, 1.0, 2.0]), jnp.array([0.2, 0.5, 0.3])
    # tau_i = 0.125, 0.375, 0.625, 0.875: F(0) = 0.2, F(1) = 0.7.
    np.testing.assert_array_equal(dist.quantile_project(x, p, 4), [0.0, 1.0, 1.0, 2.0])
    np.testing.assert_allclose(dist.quantile_midpoints(4), [0.125, 0.375, 0.625, 0.875])


def test_uniform_return_example():
    """Reward Bernoulli(1/2) in {0, 1}, gamma = 1/2 gives G ~ U[0, 2]. Categorical
    DP keeps the mean at exactly 1; quantile DP puts quantile i within 1/m of 2 tau_i."""
    gamma = 0.5
    z = jnp.linspace(0.0, 2.0, 21)
    probs = dist.dirac(0.0, z)
    m = 32
    theta = jnp.zeros(m)

    def cat_step(probs, _):
        atoms = jnp.stack([dist.pushforward(z, 0.0, gamma), dist.pushforward(z, 1.0, gamma)])
        x, w = dist.mixture(atoms, jnp.stack([probs, probs]), jnp.array([0.5, 0.5]))
        return dist.categorical_project(x, w, z), None

    def q_step(theta, _):
        locs = jnp.stack([dist.pushforward(theta, 0.0, gamma), dist.pushforward(theta, 1.0, gamma)])
        x, w = dist.mixture(locs, jnp.full((2, m), 1.0 / m), jnp.array([0.5, 0.5]))
        return dist.quantile_project(x, w, m), None

    probs, _ = jax.lax.scan(cat_step, probs, None, length=60)
    theta, _ = jax.lax.scan(q_step, theta, None, length=60)
    assert float(probs @ z) == pytest.approx(1.0, abs=1e-6)
    taus = dist.quantile_midpoints(m)
    assert float(jnp.max(jnp.abs(theta - 2 * taus))) <= 1.0 / m
    # And the categorical fixed point is close to U[0, 2] in Cramér distance.
    u = jnp.linspace(0.0, 2.0, 2001)
    assert float(dist.cramer(z, probs, u, jnp.full(u.shape, 1 / 2001))) < 0.05


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------


def test_metrics_match_scipy():
    rng = np.random.default_rng(2)
    for _ in range(10):
        xa, pa = random_atoms(rng, 7)
        xb, pb = random_atoms(rng, 5)
        w1 = scipy.stats.wasserstein_distance(xa, xb, pa, pb)
        assert float(dist.wasserstein(xa, pa, xb, pb, 1.0)) == pytest.approx(w1, rel=1e-4, abs=1e-5)
        # scipy's energy distance is sqrt(2) times the Cramér (l2) distance.
        ed = scipy.stats.energy_distance(xa, xb, pa, pb)
        assert float(dist.cramer(xa, pa, xb, pb)) == pytest.approx(ed / np.sqrt(2), rel=1e-4, abs=1e-5)


def test_wasserstein_hand_computed():
    x = jnp.array([0.0, 1.0])
    p = jnp.array([0.5, 0.5])
    y = jnp.array([0.0, 3.0])
    # Quantile functions differ by 2 on (1/2, 1].
    assert float(dist.wasserstein(x, p, y, p, 2.0)) == pytest.approx(np.sqrt(0.5 * 4))
    assert float(dist.wasserstein_inf(x, p, y, p)) == pytest.approx(2.0)
    assert float(dist.wasserstein_inf(x, p, x, p)) == 0.0
    # A shift by d moves every quantile by d.
    assert float(dist.wasserstein_inf(x, p, x + 0.3, p)) == pytest.approx(0.3)


def _markov_chain(key, S=4, K=2, gamma=0.9):
    """A random policy-induced chain: P [S, S], rewards [S, K] in [-1, 1], probs [S, K]."""
    k1, k2, k3 = jax.random.split(key, 3)
    P = _simplex(k1, (S, S))
    r = jax.random.uniform(k2, (S, K), minval=-1, maxval=1)
    pr = _simplex(k3, (S, K))
    return P, r, pr


def _simplex(key, shape):
    e = jax.random.exponential(key, shape)  # normalised Exp(1) = Dirichlet(1)
    return e / e.sum(-1, keepdims=True)


def _bellman_atoms(P, r, pr, atoms, probs, gamma):
    """Exact T eta(s) as weighted atoms over (s', k, m): `[S, S*K*M]`."""
    S, K = r.shape
    M = atoms.shape[-1]
    x = r[:, None, :, None] + gamma * atoms[None, :, None, :]  # [S, S', K, M]
    x = jnp.broadcast_to(x, (S, S, K, M))
    w = P[:, :, None, None] * pr[:, None, :, None] * probs[None, :, None, :]
    return x.reshape(S, -1), w.reshape(S, -1)


def test_projected_categorical_operator_is_sqrt_gamma_contraction_in_cramer():
    gamma = 0.9
    z = jnp.linspace(-10.0, 10.0, 15)  # covers [r_min, r_max] / (1 - gamma): no clipping

    @jax.jit
    def ratio(key):
        P, r, pr = _markov_chain(key, gamma=gamma)
        k1, k2 = jax.random.split(jax.random.fold_in(key, 1))
        e1, e2 = _simplex(k1, (4, 15)), _simplex(k2, (4, 15))

        def apply(e):
            x, w = _bellman_atoms(P, r, pr, jnp.broadcast_to(z, (4, 15)), e, gamma)
            return jax.vmap(dist.categorical_project, (0, 0, None))(x, w, z)

        d = jax.vmap(dist.cramer, (None, 0, None, 0))
        return jnp.max(d(z, apply(e1), z, apply(e2))) / jnp.max(d(z, e1, z, e2))

    ratios = np.asarray(jax.vmap(ratio)(jax.random.split(jax.random.key(0), 20)))
    assert np.all(ratios <= np.sqrt(gamma) + 1e-5)
    assert np.all(ratios > 0.05)  # non-degenerate instances


def test_projected_quantile_operator_is_gamma_contraction_in_w_inf():
    gamma, m = 0.9, 8

    @jax.jit
    def ratio(key):
        P, r, pr = _markov_chain(key, gamma=gamma)
        k1, k2 = jax.random.split(jax.random.fold_in(key, 1))
        t1 = jnp.sort(jax.random.normal(k1, (4, m)) * 3, axis=-1)
        t2 = jnp.sort(jax.random.normal(k2, (4, m)) * 3, axis=-1)
        uniform = jnp.full((4, m), 1.0 / m)

        def apply(t):
            x, w = _bellman_atoms(P, r, pr, t, uniform, gamma)
            return jax.vmap(dist.quantile_project, (0, 0, None))(x, w, m)

        d = jax.vmap(dist.wasserstein_inf)
        return jnp.max(d(apply(t1), uniform, apply(t2), uniform)) / jnp.max(d(t1, uniform, t2, uniform))

    ratios = np.asarray(jax.vmap(ratio)(jax.random.split(jax.random.key(1), 20)))
    assert np.all(ratios <= gamma + 1e-5)
    assert np.all(ratios > 0.05)


# --------------------------------------------------------------------------------------
# Functionals
# --------------------------------------------------------------------------------------


def test_cvar_closed_forms():
    # N(0, 1): CVaR_tau = -phi(Phi^{-1}(tau)) / tau. Quantile midpoints of N(0, 1).
    m = 200_000
    taus = (np.arange(m) + 0.5) / m
    locs, w = dist.quantile_as_atoms(jnp.asarray(scipy.stats.norm.ppf(taus), jnp.float32))
    for tau in (0.05, 0.1, 0.25, 0.5, 1.0):
        exact = -scipy.stats.norm.pdf(scipy.stats.norm.ppf(tau)) / tau if tau < 1 else 0.0
        assert float(dist.cvar(locs, w, tau)) == pytest.approx(exact, abs=2e-3)
    # U[a, b]: a + tau (b - a) / 2; the midpoint rule is exact for a linear quantile
    # function (float64, so the cumulative sums carry no float32 rounding).
    a, b, m = -1.0, 3.0, 1000
    with jax.enable_x64(True):
        locs = jnp.asarray(a + (b - a) * (np.arange(m) + 0.5) / m, jnp.float64)
        for tau in (0.05, 0.1, 0.25, 0.5, 1.0):
            got = float(dist.cvar(*dist.quantile_as_atoms(locs), jnp.float64(tau)))
            assert got == pytest.approx(a + tau * (b - a) / 2, abs=1e-9)
    # Discrete, by hand: atoms {-2, 0, 5} w.p. {0.1, 0.3, 0.6}.
    x, p = jnp.array([5.0, -2.0, 0.0]), jnp.array([0.6, 0.1, 0.3])
    assert float(dist.cvar(x, p, 0.1)) == pytest.approx(-2.0)
    assert float(dist.cvar(x, p, 0.25)) == pytest.approx((0.1 * -2 + 0.15 * 0) / 0.25)
    assert float(dist.cvar(x, p, 0.5)) == pytest.approx((0.1 * -2 + 0.3 * 0 + 0.1 * 5) / 0.5)
    assert float(dist.cvar(x, p, 1.0)) == pytest.approx(float(dist.mean(x, p)))
    assert float(dist.value_at_risk(x, p, 0.1)) == -2.0
    assert float(dist.value_at_risk(x, p, 0.11)) == 0.0


def test_cvar_equals_rockafellar_uryasev():
    rng = np.random.default_rng(3)
    for _ in range(10):
        x, p = random_atoms(rng, 9)
        tau = float(rng.uniform(0.05, 1.0))
        cs = -jnp.asarray(x)  # the outer max is reached at some -atom
        ru = jnp.max(-cs + jax.vmap(lambda c: jnp.sum(p * jnp.minimum(c + x, 0.0)))(cs) / tau)
        assert float(dist.cvar(x, p, tau)) == pytest.approx(float(ru), abs=1e-5)


def test_other_functionals():
    x, p = jnp.array([-1.0, 0.0, 2.0]), jnp.array([0.25, 0.25, 0.5])
    assert float(dist.mean(x, p)) == pytest.approx(0.75)
    assert float(dist.variance(x, p)) == pytest.approx(0.25 * 1 + 0.5 * 4 - 0.75**2)
    assert float(dist.threshold_probability(x, p, 0.0)) == 0.75
    assert float(dist.expected_utility(x, p, lambda y: jnp.minimum(y, 0.0), stock=-1.0)) == pytest.approx(
        0.25 * -2 + 0.25 * -1 + 0.5 * 0)
    assert float(dist.expectile(x, p, 0.5)) == pytest.approx(0.75, abs=1e-5)
    for tau in (0.1, 0.3, 0.9):
        e = dist.expectile(x, p, tau)
        up, down = jnp.sum(p * jnp.maximum(x - e, 0)), jnp.sum(p * jnp.maximum(e - x, 0))
        assert float(tau * up - (1 - tau) * down) == pytest.approx(0.0, abs=1e-5)
    assert float(dist.expectile(x, p, 0.1)) < float(dist.expectile(x, p, 0.9))


# --------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("huber", [0.0, 1.0])
def test_quantile_huber_loss_matches_rlax(huber):
    rng = np.random.default_rng(4)
    taus = dist.quantile_midpoints(8)
    for _ in range(5):
        src = jnp.asarray(rng.normal(size=8), jnp.float32)
        tgt = jnp.asarray(rng.normal(size=6), jnp.float32)
        ours = dist.quantile_huber_loss(src, taus, tgt, huber)
        theirs = rlax.quantile_regression_loss(src, taus, tgt, huber)
        assert float(ours) == pytest.approx(float(theirs), rel=1e-5)
        g1 = jax.grad(dist.quantile_huber_loss)(src, taus, tgt, huber)
        g2 = jax.grad(rlax.quantile_regression_loss)(src, taus, tgt, huber)
        np.testing.assert_allclose(g1, g2, atol=1e-6)


def test_categorical_cross_entropy():
    p = jnp.array([0.2, 0.3, 0.5])
    logits = jnp.array([0.1, -1.0, 2.0])
    expected = -np.sum(np.asarray(p) * np.asarray(jax.nn.log_softmax(logits)))
    assert float(dist.categorical_cross_entropy(p, logits)) == pytest.approx(expected)
    assert float(dist.categorical_cross_entropy(p, jnp.log(p))) == pytest.approx(float(-jnp.sum(p * jnp.log(p))))
