"""Pareto tools and indicators: parity with pymoo, hand-computed values, properties."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymoo.indicators.hv import HV

from rlx.agents.morl import indicators as ind
from rlx.pareto import (
    archive_front,
    archive_init,
    archive_insert,
    archive_insert_batch,
    check_weights,
    crowding_distance,
    dirichlet_weights,
    dominates,
    non_dominated_mask,
    pareto_filter,
    simplex_lattice,
)

# ---------------------------------------------------------------------------
# Hypervolume
# ---------------------------------------------------------------------------


def _random_front(rng, d):
    """A random float64 front: continuous, or on an integer grid (ties, duplicates),
    with some points not above the reference point."""
    n = int(rng.integers(1, 25))
    if rng.random() < 0.3:
        front = rng.integers(-2, 5, size=(n, d)).astype(np.float64)
        ref = np.full(d, -1.0)
    else:
        front = rng.normal(size=(n, d)) * rng.uniform(0.5, 10.0)
        ref = rng.normal(size=d) - 1.0
    return front, ref


@pytest.mark.parametrize("d,count", [(2, 100), (3, 80), (5, 30)])
def test_hypervolume_matches_pymoo(d, count):
    rng = np.random.default_rng(d)
    nonzero = 0
    for _ in range(count):
        front, ref = _random_front(rng, d)
        ours = ind.hypervolume(front, ref)
        theirs = float(HV(ref_point=-ref)(-front))
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)
        nonzero += theirs > 0
    assert nonzero > count // 2  # the comparison is not vacuous


def test_hypervolume_hand_values():
    # 2 + 1.5 minus the 1 x 0.5 overlap
    assert ind.hypervolume([[1.0, 2.0], [3.0, 0.5]], [0.0, 0.0]) == pytest.approx(3.0)
    assert ind.hypervolume([[2.0, 3.0, 4.0]], [1.0, 1.0, 1.0]) == pytest.approx(1 * 2 * 3)
    # (1,1,1) and (2,2,0.5) above the origin: 1 + 2 - 0.5 overlap.
    assert ind.hypervolume([[1, 1, 1], [2, 2, 0.5]], [0, 0, 0]) == pytest.approx(2.5)
    assert ind.hypervolume([[-1.0, 5.0]], [0.0, 0.0]) == 0.0  # not above the reference point


def test_hypervolume_kernels_jit_vmap_and_mask():
    rng = np.random.default_rng(7)
    fronts = rng.normal(size=(6, 12, 2))
    ref = np.array([-3.0, -3.0])
    mask = rng.random((6, 12)) < 0.7
    mask[:, 0] = True
    batched = jax.jit(jax.vmap(ind.hypervolume_2d, in_axes=(0, None, 0)))(
        jnp.asarray(fronts), jnp.asarray(ref), jnp.asarray(mask)
    )
    for b in range(6):
        expected = ind.hypervolume(fronts[b][mask[b]], ref)
        assert float(batched[b]) == pytest.approx(expected, rel=1e-5)
    front3 = rng.normal(size=(15, 3))
    ref3 = np.full(3, -3.0)
    got = jax.jit(ind.hypervolume_3d)(jnp.asarray(front3), jnp.asarray(ref3))
    assert float(got) == pytest.approx(float(HV(ref_point=-ref3)(-front3)), rel=1e-5)


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------


def test_simplex_lattice_counts():
    w = simplex_lattice(3, 0.1)
    assert w.shape == (66, 3)
    assert len({tuple(np.round(r * 10).astype(int)) for r in w}) == 66
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
    assert np.all(w >= 0)
    for n, h in [(2, 100), (4, 5), (6, 5), (3, 20)]:
        assert simplex_lattice(n, divisions=h).shape == (math.comb(h + n - 1, n - 1), n)
    np.testing.assert_allclose(simplex_lattice(2, 0.25)[:, 0], [0, 0.25, 0.5, 0.75, 1.0])
    with pytest.raises(ValueError, match="integer"):
        simplex_lattice(3, 0.3)
    with pytest.raises(ValueError, match="exactly one"):
        simplex_lattice(3)


def test_dirichlet_weights_on_simplex():
    w = np.asarray(dirichlet_weights(jax.random.key(0), 500, 4))
    assert w.shape == (500, 4)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-5)
    assert np.all(w >= 0)
    assert np.abs(w.mean(0) - 0.25).max() < 0.03  # alpha = 1 is uniform: mean 1/d


# ---------------------------------------------------------------------------
# Non-dominated filtering and the archive (hypothesis)
# ---------------------------------------------------------------------------

# Points on a small integer grid, so that ties and duplicates are common.
fronts = st.integers(1, 4).flatmap(
    lambda d: st.lists(
        st.lists(st.integers(-3, 3).map(float), min_size=d, max_size=d), min_size=1, max_size=25
    )
)


@settings(max_examples=150, deadline=None)
@given(fronts)
def test_pareto_filter_idempotent_and_correct(points):
    front = np.asarray(points)
    kept = pareto_filter(front)
    np.testing.assert_array_equal(pareto_filter(kept), kept)
    assert len({tuple(p) for p in kept}) == len(kept)  # no duplicates
    assert not np.any(dominates(kept[:, None, :], kept[None, :, :]))
    # every input point is matched or dominated by a kept point
    assert np.all(np.any(np.all(kept[None, :, :] >= front[:, None, :], -1), 1))
    # the jitted jax kernel, on a padded front with a mask, agrees with the numpy one
    n, d = front.shape
    padded = np.concatenate([front, np.full((25 - n, d), 9.0)])  # padding would dominate all
    got = _nd_mask_jit(jnp.asarray(padded), jnp.arange(25) < n)
    np.testing.assert_array_equal(np.asarray(got)[:n], non_dominated_mask(front))
    assert not np.any(np.asarray(got)[n:])


_nd_mask_jit = jax.jit(non_dominated_mask)


_insert = jax.jit(archive_insert)


@settings(max_examples=60, deadline=None)
@given(fronts.filter(lambda p: len(p[0]) >= 2))
def test_archive_keeps_every_non_dominated_point_under_capacity(points):
    front = np.asarray(points, np.float32)
    d = front.shape[1]
    ref = np.full(d, -2.0, np.float32)
    archive = archive_init(32, d)  # capacity >= number of points: nothing is pruned
    for i, p in enumerate(front):
        archive = _insert(archive, jnp.asarray(p), i, jnp.asarray(ref))
    got, payload = archive_front(archive)
    above = front[np.all(front > ref, axis=1)]
    expected = pareto_filter(above) if len(above) else np.zeros((0, d))
    assert {tuple(p) for p in got} == {tuple(p) for p in expected.astype(np.float32)}
    assert len(got) == len(expected)
    np.testing.assert_array_equal(front[payload], got)  # payloads point at the right rows


def test_archive_prunes_by_crowding_at_capacity():
    angles = np.linspace(0, np.pi / 2, 40)
    circle = np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)
    order = np.random.default_rng(0).permutation(40)
    archive = jax.jit(archive_insert_batch)(
        archive_init(10, 2), jnp.asarray(circle[order]), jnp.asarray(order), jnp.full(2, -0.5)
    )
    got, payload = archive_front(archive)
    assert len(got) == 10
    assert not np.any(dominates(got[:, None], got[None, :]))
    assert {0, 39} <= set(payload.tolist())  # the two extremes (infinite crowding) survive
    gaps = np.diff(np.sort(angles[payload]))
    assert gaps.max() < 4 * (np.pi / 2 / 9)  # pruning spreads points, no big hole


def test_archive_rejects_points_below_reference_and_dominated():
    archive = archive_init(4, 2)
    archive = _insert(archive, jnp.array([1.0, 1.0]), 0, jnp.zeros(2))
    archive = _insert(archive, jnp.array([0.5, 0.5]), 1, jnp.zeros(2))  # dominated
    archive = _insert(archive, jnp.array([5.0, 0.0]), 2, jnp.zeros(2))  # on the reference
    archive = _insert(archive, jnp.array([1.0, 1.0]), 3, jnp.zeros(2))  # duplicate
    got, payload = archive_front(archive)
    np.testing.assert_array_equal(got, [[1.0, 1.0]])
    np.testing.assert_array_equal(payload, [0])
    archive = _insert(archive, jnp.array([2.0, 2.0]), 4, jnp.zeros(2))  # dominates the old one
    np.testing.assert_array_equal(archive_front(archive)[1], [4])


# ---------------------------------------------------------------------------
# Crowding distance
# ---------------------------------------------------------------------------


def test_crowding_distance_constant_objective_is_finite():
    rng = np.random.default_rng(1)
    front = np.stack([rng.normal(size=10), np.full(10, 3.0), rng.normal(size=10)], 1)
    for xp_front in (front, jnp.asarray(front)):
        cd = np.asarray(crowding_distance(xp_front))
        assert not np.any(np.isnan(cd))
        boundary = np.zeros(10, bool)
        for j in (0, 2):
            boundary[[np.argmin(front[:, j]), np.argmax(front[:, j])]] = True
        assert np.all(np.isinf(cd[boundary])) and np.all(cd[boundary] > 0)
        assert np.all(np.isfinite(cd[~boundary])) and np.all(cd[~boundary] > 0)
    # all objectives constant: nothing to tell apart, distance 0, not NaN
    np.testing.assert_array_equal(crowding_distance(np.ones((5, 2))), np.zeros(5))
    # two or fewer points are all boundary points
    assert np.all(np.isinf(crowding_distance(np.array([[1.0, 2.0], [2.0, 1.0]]))))


_crowding_jit = jax.jit(crowding_distance)


def test_crowding_distance_matches_pymoo_and_mask():
    from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance

    rng = np.random.default_rng(2)
    for _ in range(20):
        n, d = int(rng.integers(3, 15)), int(rng.integers(2, 5))
        front = rng.normal(size=(n, d))
        # pymoo averages over objectives (and minimises; the sign does not matter)
        np.testing.assert_allclose(crowding_distance(front), calc_crowding_distance(-front) * d, rtol=1e-9)
        padded = np.concatenate([front, rng.normal(size=(16 - n, d)) * 100], 0)
        mask = np.arange(16) < n
        got = np.asarray(_crowding_jit(jnp.asarray(padded), jnp.asarray(mask)))
        np.testing.assert_allclose(got[:n], crowding_distance(front), rtol=1e-4)
        assert np.all(got[n:] == -np.inf)


# ---------------------------------------------------------------------------
# Other indicators
# ---------------------------------------------------------------------------


def test_utility_indicators_hand_values():
    front = np.array([[1.0, 0.0], [0.0, 1.0]])
    w = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    assert ind.expected_utility(front, w) == pytest.approx((1 + 0.5 + 1) / 3)
    assert float(jax.jit(ind.expected_utility)(jnp.asarray(front), jnp.asarray(w))) == pytest.approx(2.5 / 3)
    true = np.array([[1.0, 0.0], [0.8, 0.8], [0.0, 1.0]])
    assert ind.maximum_utility_loss(true, true, w) == 0.0
    assert ind.maximum_utility_loss(front, true, w) == pytest.approx(0.3)
    assert ind.igd(true, true) == 0.0
    assert ind.igd(front, true) == pytest.approx(np.hypot(0.8, 0.2) / 3)
    # PGMORL sparsity: sorted per objective, (0,0.8,1) in each -> (0.64 + 0.04) * 2 / 2
    assert ind.sparsity(true) == pytest.approx(0.68)
    assert ind.sparsity([[1.0, 2.0]]) == 0.0
    assert ind.cardinality([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.5]]) == 2


def test_bad_inputs_raise():
    front = np.array([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="objectives"):
        ind.expected_utility(front, np.array([[0.2, 0.3, 0.5]]))  # wrong dimension
    with pytest.raises(ValueError, match="sum to 1"):
        ind.expected_utility(front, np.array([[0.7, 0.7]]))  # off the simplex
    with pytest.raises(ValueError, match="non-negative"):
        ind.expected_utility(front, np.array([[1.5, -0.5]]))
    with pytest.raises(ValueError, match="objectives"):
        jax.jit(ind.expected_utility)(jnp.asarray(front), jnp.ones((3, 3)) / 3)
    with pytest.raises(ValueError, match="ref_point"):
        ind.hypervolume(front, [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="NaN"):
        ind.hypervolume([[np.nan, 1.0]], [0.0, 0.0])
    with pytest.raises(ValueError, match="sum to 1"):
        check_weights(np.array([0.5, 0.6]), 2)
    empty = np.zeros((0, 2))
    w = np.array([[0.5, 0.5]])
    for call in (
        lambda: ind.hypervolume(empty, [0.0, 0.0]),
        lambda: ind.expected_utility(empty, w),
        lambda: ind.sparsity(empty),
        lambda: ind.cardinality(empty),
        lambda: ind.igd(empty, front),
        lambda: ind.igd(front, empty),
        lambda: ind.maximum_utility_loss(empty, front, w),
    ):
        with pytest.raises(ValueError, match="empty"):
            call()
