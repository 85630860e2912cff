"""GAE and discounted returns against plain Python loops and rlax."""

import jax.numpy as jnp
import numpy as np
import pytest
import rlax

from rlx.returns import discounted_returns, gae


def gae_loop(r, v, nv, term, done, gamma, lam):
    """The definition, one step at a time (time-major, one env)."""
    T = len(r)
    adv = np.zeros(T)
    nxt = 0.0
    for t in reversed(range(T)):
        delta = r[t] + gamma * (1 - term[t]) * nv[t] - v[t]
        nxt = delta + gamma * lam * (1 - done[t]) * nxt
        adv[t] = nxt
    return adv


def random_episode_batch(rng, T=40, B=5, p_end=0.1):
    r = rng.normal(size=(T, B))
    v = rng.normal(size=(T, B))
    final_v = rng.normal(size=(T, B))  # value of the true final state where an episode ended
    v_last = rng.normal(size=(B,))
    ended = rng.random((T, B)) < p_end
    term = ended & (rng.random((T, B)) < 0.5)
    trunc = ended & ~term
    done = term | trunc
    following = np.concatenate([v[1:], v_last[None]], 0)
    nv = np.where(done, final_v, following)
    return r, v, nv, term, trunc, done, v_last, final_v


@pytest.mark.parametrize("seed", range(5))
def test_gae_matches_loop(seed):
    rng = np.random.default_rng(seed)
    r, v, nv, term, _, done, _, _ = random_episode_batch(rng)
    adv, ret = gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(nv), jnp.asarray(term), jnp.asarray(done), 0.97, 0.9)
    for b in range(r.shape[1]):
        ref = gae_loop(r[:, b], v[:, b], nv[:, b], term[:, b], done[:, b], 0.97, 0.9)
        np.testing.assert_allclose(np.asarray(adv[:, b]), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ret), np.asarray(adv) + v, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_gae_matches_rlax_per_episode_segment(seed):
    """rlax's GAE has no notion of truncation, so we cut the trajectory at every
    episode end and give rlax each segment with its own bootstrap value: V(final
    state) after a truncation, 0 (discount 0) after a termination."""
    rng = np.random.default_rng(100 + seed)
    gamma, lam = 0.99, 0.95
    r, v, nv, term, trunc, done, v_last, final_v = random_episode_batch(rng)
    adv, _ = gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(nv), jnp.asarray(term), jnp.asarray(done), gamma, lam)
    checked = 0
    for b in range(r.shape[1]):
        start = 0
        ends = list(np.flatnonzero(done[:, b])) + ([len(r) - 1] if not done[-1, b] else [])
        for end in ends:
            seg = slice(start, end + 1)
            boot = final_v[end, b] if done[end, b] else v_last[b]
            disc = np.full(end + 1 - start, gamma)
            disc[-1] = 0.0 if term[end, b] else gamma
            values = np.concatenate([v[seg, b], [boot]])
            ref = rlax.truncated_generalized_advantage_estimation(
                jnp.asarray(r[seg, b]), jnp.asarray(disc), lam, jnp.asarray(values)
            )
            np.testing.assert_allclose(np.asarray(adv[seg, b]), np.asarray(ref), rtol=1e-5, atol=1e-5)
            checked += 1
            start = end + 1
    assert checked > r.shape[1]  # some trajectories really were cut


def test_gae_truncation_bootstraps_but_termination_does_not():
    r = jnp.zeros((1, 2))
    v = jnp.zeros((1, 2))
    nv = jnp.full((1, 2), 10.0)
    term = jnp.array([[True, False]])
    done = jnp.array([[True, True]])  # env 0 terminated, env 1 truncated
    adv, _ = gae(r, v, nv, term, done, 0.5, 1.0)
    np.testing.assert_allclose(np.asarray(adv), [[0.0, 5.0]])


def test_discounted_returns_match_loop():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(30, 3))
    done = rng.random((30, 3)) < 0.2
    boot = rng.normal(size=3)
    out = np.asarray(discounted_returns(jnp.asarray(r), jnp.asarray(done), jnp.asarray(boot), 0.9))
    for b in range(3):
        g = boot[b]
        for t in reversed(range(30)):
            g = r[t, b] + 0.9 * (1 - done[t, b]) * g
            np.testing.assert_allclose(out[t, b], g, rtol=1e-5, atol=1e-5)
