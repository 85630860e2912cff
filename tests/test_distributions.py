"""rlx.distributions (action distributions) against scipy and change-of-variables references.

The categorical projection and the quantile-Huber loss (rlx.distributional) are
checked against rlax in tests/test_distributional.py; the deep-RL TD losses built on
them, in tests/test_dqn.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from rlx import distributions as D


def tanh_density_by_finite_differences(y, mean, std, h=1e-6):
    """Density of Y = tanh(U), U ~ N(mean, std²) per dim, computed from its CDF
    P(Y <= y) = Φ((atanh(y) - mean)/std) by central differences in float64, then
    multiplied over the (independent) dimensions. Returns the log."""
    y, mean, std = (np.asarray(a, np.float64) for a in (y, mean, std))
    cdf = lambda v: scipy.stats.norm.cdf((np.arctanh(v) - mean) / std)  # noqa: E731
    density = (cdf(y + h) - cdf(y - h)) / (2 * h)
    return np.sum(np.log(density), -1)


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    rng = np.random.default_rng(0)
    for dim in (1, 3):
        mean = rng.normal(0, 1, (64, dim)).astype(np.float32)
        log_std = rng.uniform(-1.5, 0.5, (64, dim)).astype(np.float32)
        u = (mean + np.exp(log_std) * rng.normal(0, 1, (64, dim))).astype(np.float32)
        u = np.clip(u, -3.0, 3.0)  # keep tanh(u) away from ±1, where finite differences lose precision
        ours = np.asarray(D.tanh_gaussian_log_prob(jnp.asarray(mean), jnp.asarray(log_std), jnp.asarray(u)))
        ref = tanh_density_by_finite_differences(np.tanh(u.astype(np.float64)), mean, np.exp(log_std))
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=2e-4)


def test_tanh_gaussian_log_prob_is_stable_in_the_tails():
    """log(1 - tanh(u)²) written naively is -inf beyond |u| ≈ 9 in float32; ours stays finite
    and equals the exact asymptote log 4 - 2|u|."""
    u = jnp.array([[12.0], [-20.0]])
    logp = D.tanh_gaussian_log_prob(jnp.zeros((2, 1)), jnp.zeros((2, 1)), u)
    expected = scipy.stats.norm.logpdf([12.0, -20.0]) - (np.log(4.0) - 2 * np.abs([12.0, -20.0]))
    np.testing.assert_allclose(np.asarray(logp), expected, rtol=1e-5)


def test_tanh_gaussian_sample():
    key = jax.random.key(0)
    mean, log_std = jnp.array([0.5, -1.0]), jnp.array([-0.5, 0.2])
    action, u = jax.vmap(lambda k: D.tanh_gaussian_sample(k, mean, log_std))(jax.random.split(key, 20_000))
    np.testing.assert_allclose(np.asarray(action), np.tanh(np.asarray(u)), rtol=1e-6, atol=1e-6)
    assert float(jnp.max(jnp.abs(action))) <= 1.0
    # The pre-squash sample is the Gaussian: its moments match.
    np.testing.assert_allclose(np.asarray(u.mean(0)), mean, atol=0.03)
    np.testing.assert_allclose(np.asarray(u.std(0)), np.exp(log_std), rtol=0.03)


def test_gaussian_log_prob_and_entropy_match_scipy():
    rng = np.random.default_rng(1)
    mean, log_std, x = (rng.normal(size=(5, 3)).astype(np.float32) for _ in range(3))
    ref = scipy.stats.norm.logpdf(x, mean, np.exp(log_std)).sum(-1)
    np.testing.assert_allclose(np.asarray(D.gaussian_log_prob(mean, log_std, x)), ref, rtol=1e-5)
    ref_h = scipy.stats.norm.entropy(mean, np.exp(log_std)).sum(-1)
    np.testing.assert_allclose(np.asarray(D.gaussian_entropy(jnp.asarray(log_std))), ref_h, rtol=1e-5)


def test_categorical_matches_scipy():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    q_logits = rng.normal(size=(6, 4)).astype(np.float32)
    a = rng.integers(0, 4, 6)
    p, q = scipy.special.softmax(logits, -1), scipy.special.softmax(q_logits, -1)
    np.testing.assert_allclose(np.asarray(D.categorical_log_prob(logits, a)), np.log(p[np.arange(6), a]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(D.categorical_entropy(logits)), scipy.stats.entropy(p, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(D.categorical_kl(logits, q_logits)), scipy.stats.entropy(p, q, axis=-1), rtol=1e-4)
    samples = jax.vmap(D.categorical_sample, (0, None))(jax.random.split(jax.random.key(3), 20_000), logits[0])
    freq = np.bincount(np.asarray(samples), minlength=4) / 20_000
    np.testing.assert_allclose(freq, p[0], atol=0.015)


@pytest.mark.parametrize("u", [0.0, 0.7, -2.5, 8.0])
def test_tanh_log_det_jacobian(u):
    expected = np.log(1.0 - np.tanh(np.float64(u)) ** 2)
    assert float(D.tanh_log_det_jacobian(jnp.array([u]))) == pytest.approx(expected, rel=1e-5, abs=1e-6)
