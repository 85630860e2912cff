"""Pareto tools for multi-objective RL: dominance, the Pareto archive, crowding
distance, and preference (weight) sets.

Everything maximises: `p` dominates `q` when `p >= q` in every objective and
`p > q` in at least one.

Array conventions: `front: [n, d]` is `n` points with `d` objectives;
`mask: [n]` marks which rows are real (padding lets fronts of different sizes share
one compiled program); `weights: [W, d]` are points on the probability simplex.

The array kernels (`non_dominated_mask`, `crowding_distance`) run on numpy arrays on
the host, keeping float64 exactly, and on jax arrays inside `jit`/`vmap`: the
namespace is picked from the input type, so there is a single implementation.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def _xp(*arrays):
    """numpy for host arrays (exact float64), jax.numpy for jax arrays and tracers."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


# ---------------------------------------------------------------------------
# Input checks, shared by indicators, wrappers and env specs.
# ---------------------------------------------------------------------------


def check_front(front, name: str = "front", allow_empty: bool = False) -> np.ndarray:
    """Return `front` as a float64 `[n, d]` numpy array, or raise a ValueError.

    A 1-D input of length `d` is read as one point.
    """
    arr = np.asarray(front, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected an array of shape [n, d], got shape {arr.shape}.")
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(
            f"{name} is empty (shape {arr.shape}): an indicator of an empty front is undefined. "
            "Evaluate at least one policy before computing indicators."
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: points have 0 objectives (shape {arr.shape}).")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values; every return must be finite.")
    return arr


def check_ref_point(ref_point, reward_dim: int) -> np.ndarray:
    """Return `ref_point` as a float64 `[d]` array, or raise a ValueError."""
    ref = np.asarray(ref_point, dtype=np.float64)
    if ref.shape != (reward_dim,):
        raise ValueError(
            f"ref_point has shape {ref.shape} but the front has {reward_dim} objectives; "
            f"pass a reference point of shape ({reward_dim},), e.g. the env's `mo_spec.ref_point`."
        )
    if not np.all(np.isfinite(ref)):
        raise ValueError(f"ref_point must be finite, got {ref}.")
    return ref


def check_weights(weights, reward_dim: int, atol: float = 1e-6):
    """Check that `weights: [W, d]` (or one `[d]` vector) lie on the simplex.

    The shape is always checked. The values (non-negative, summing to 1 within
    `atol`) are checked whenever they are concrete, i.e. outside `jit`.
    Returns the weights unchanged (numpy inputs as float64).
    """
    shape = tuple(np.shape(weights))
    if len(shape) not in (1, 2) or shape[-1] != reward_dim:
        raise ValueError(
            f"weights have shape {shape} but the reward has {reward_dim} objectives; "
            f"expected [{reward_dim}] or [W, {reward_dim}]."
        )
    if len(shape) == 2 and shape[0] == 0:
        raise ValueError("the weight set is empty; pass at least one weight vector.")
    if _is_concrete(weights):
        w = np.asarray(weights, dtype=np.float64)
        if not np.all(np.isfinite(w)):
            raise ValueError("weights contain NaN or infinite values.")
        if np.any(w < -atol):
            raise ValueError(f"weights must be non-negative (on the simplex); min is {w.min():.6g}.")
        sums = w.sum(-1)
        if np.any(np.abs(sums - 1.0) > atol):
            worst = float(sums.reshape(-1)[np.argmax(np.abs(sums - 1.0).reshape(-1))])
            raise ValueError(
                f"weights must sum to 1 (lie on the simplex); found a row summing to {worst:.6g}. "
                "Normalise them, or build them with `simplex_lattice` / `dirichlet_weights`."
            )
        if isinstance(weights, (np.ndarray, list, tuple)):
            return w
    return weights


# ---------------------------------------------------------------------------
# Dominance
# ---------------------------------------------------------------------------


def dominates(a, b):
    """Pareto dominance for maximisation. `a: [..., d]`, `b: [..., d]` -> `[...]` bool."""
    xp = _xp(a, b)
    return xp.all(a >= b, axis=-1) & xp.any(a > b, axis=-1)


def non_dominated_mask(front, mask=None):
    """Which rows of `front: [n, d]` are non-dominated, as `[n]` bool.

    Rows with `mask == False` are ignored (neither kept nor allowed to dominate).
    Of several identical points only the first is kept, so that filtering is
    idempotent and the result has no duplicates. O(n^2 d); jittable.
    """
    xp = _xp(front, mask)
    n = front.shape[0]
    valid = xp.ones((n,), dtype=bool) if mask is None else xp.asarray(mask, dtype=bool)
    # ge[i, j]: point i is >= point j everywhere; gt[i, j]: somewhere strictly.
    ge = xp.all(front[:, None, :] >= front[None, :, :], axis=-1)
    gt = xp.any(front[:, None, :] > front[None, :, :], axis=-1)
    idx = xp.arange(n)
    # i knocks out j if it dominates j, or if it equals j and comes first.
    knocks = ge & (gt | (idx[:, None] < idx[None, :])) & valid[:, None]
    return valid & ~xp.any(knocks, axis=0)


def pareto_filter(front) -> np.ndarray:
    """The non-dominated, de-duplicated subset of `front: [n, d]`, in input order.

    Host function: returns a float64 numpy array `[m, d]` (`m >= 1` for `n >= 1`).
    """
    arr = check_front(front, allow_empty=True)
    if arr.shape[0] == 0:
        return arr
    return arr[non_dominated_mask(arr)]


# ---------------------------------------------------------------------------
# Crowding distance (NSGA-II, Deb et al. 2002, Sec. III-B)
# ---------------------------------------------------------------------------


def crowding_distance(front, mask=None):
    """NSGA-II crowding distance of each row of `front: [n, d]`, as `[n]`.

    For each objective the valid points are sorted; the two boundary points get
    `+inf`, an interior point gets the gap between its neighbours divided by the
    objective's range; the distance is the sum over objectives.

    An objective whose range is zero (all valid points equal in it) cannot tell
    points apart, so it contributes nothing, neither a gap nor `+inf`: the
    official C-MORL code divides by that zero range and gets NaN. With two or
    fewer valid points every one is a boundary point (`+inf`). Rows with
    `mask == False` get `-inf`, so they are never picked as "most isolated".
    Jittable; never NaN for finite input.
    """
    xp = _xp(front, mask)
    front = xp.asarray(front)
    if not xp.issubdtype(front.dtype, xp.floating):
        front = front.astype(xp.float32 if xp is jnp else xp.float64)
    n, _ = front.shape
    valid = xp.ones((n,), dtype=bool) if mask is None else xp.asarray(mask, dtype=bool)
    m = xp.sum(valid)
    big = xp.asarray(np.inf, dtype=front.dtype)
    fmin = xp.min(xp.where(valid[:, None], front, big), axis=0)
    fmax = xp.max(xp.where(valid[:, None], front, -big), axis=0)
    has_range = fmax > fmin  # False when m == 0, since then fmin = +inf, fmax = -inf
    scale = xp.where(has_range, 1.0 / xp.where(has_range, fmax - fmin, 1.0), 0.0)
    # Invalid rows sort last (key +inf) and carry a finite filler value, so the
    # neighbour differences below never compute inf - inf.
    filler = xp.where(xp.isfinite(fmax), fmax, 0.0)
    values = xp.where(valid[:, None], front, filler[None, :])
    order = xp.argsort(xp.where(valid[:, None], front, big), axis=0)  # [n, d]
    sorted_vals = xp.take_along_axis(values, order, axis=0)
    prev_v = xp.concatenate([sorted_vals[:1], sorted_vals[:-1]], axis=0)
    next_v = xp.concatenate([sorted_vals[1:], sorted_vals[-1:]], axis=0)
    rank = xp.arange(n)[:, None]
    boundary = ((rank == 0) | (rank == m - 1)) & has_range[None, :]
    gap = xp.where(boundary, big, (next_v - prev_v) * scale[None, :])
    gap = xp.where(rank < m, gap, 0.0)
    inverse = xp.argsort(order, axis=0)
    per_objective = xp.take_along_axis(gap, inverse, axis=0)  # back to input order
    distance = xp.sum(per_objective, axis=1)
    distance = xp.where(m <= 2, big, distance)
    return xp.where(valid, distance, -big)


# ---------------------------------------------------------------------------
# A fixed-capacity Pareto archive that works inside jit / scan / vmap.
# ---------------------------------------------------------------------------


class ParetoArchive(NamedTuple):
    """points: `[C, d]`; mask: `[C]` bool (row holds a point); payload: `[C]` int32
    (e.g. the index of the policy that produced the point, -1 for empty rows)."""

    points: jax.Array
    mask: jax.Array
    payload: jax.Array


def archive_init(capacity: int, reward_dim: int, dtype=jnp.float32) -> ParetoArchive:
    """An empty archive of `capacity` rows for `reward_dim` objectives."""
    if capacity < 1 or reward_dim < 1:
        raise ValueError(
            f"archive_init: capacity and reward_dim must be >= 1, got {capacity}, {reward_dim}."
        )
    return ParetoArchive(
        points=jnp.zeros((capacity, reward_dim), dtype),
        mask=jnp.zeros((capacity,), bool),
        payload=jnp.full((capacity,), -1, jnp.int32),
    )


def archive_insert(archive: ParetoArchive, point, payload, ref_point) -> ParetoArchive:
    """Offer `point: [d]` (with int `payload`) to the archive; jittable.

    The point is kept iff it is strictly above `ref_point: [d]` in every objective
    and no archived point weakly dominates it (so duplicates are not stored twice).
    Archived points it dominates are removed. If the archive is then over capacity,
    the point with the smallest crowding distance among the `C + 1` candidates is
    dropped (on ties the newest candidate loses, so the archive is stable); boundary
    points have infinite crowding distance and are kept.
    """
    points, mask, pay = archive
    capacity = points.shape[0]
    point = jnp.asarray(point, points.dtype)
    ref_point = jnp.asarray(ref_point, points.dtype)
    above = jnp.all(point > ref_point)
    covered = jnp.any(mask & jnp.all(points >= point[None, :], axis=-1))
    accept = above & ~covered
    mask = mask & ~(accept & dominates(point[None, :], points))

    cand_points = jnp.concatenate([points, point[None, :]], axis=0)
    cand_mask = jnp.concatenate([mask, accept[None]], axis=0)
    over = jnp.sum(cand_mask) > capacity
    cd = crowding_distance(cand_points, cand_mask)
    key = jnp.where(cand_mask, cd, jnp.inf)[::-1]  # reversed: ties drop the newest
    drop = capacity - jnp.argmin(key)
    cand_mask = cand_mask & ~(over & (jnp.arange(capacity + 1) == drop))

    keep_new = cand_mask[capacity]
    kept_old = cand_mask[:capacity]
    slot = jnp.argmax(~kept_old)  # a free row exists whenever the new point is kept
    write = keep_new & (jnp.arange(capacity) == slot)
    points = jnp.where(write[:, None], point[None, :], points)
    pay = jnp.where(write, jnp.asarray(payload, jnp.int32), pay)
    mask = kept_old | write
    pay = jnp.where(mask, pay, -1)
    return ParetoArchive(points, mask, pay)


def archive_insert_batch(archive: ParetoArchive, points, payloads, ref_point, valid=None):
    """Insert `points: [n, d]` with `payloads: [n]` one after another (a `lax.scan`).

    `valid: [n]` bool skips rows (e.g. padding). Jittable.
    """
    n = points.shape[0]
    valid = jnp.ones((n,), bool) if valid is None else jnp.asarray(valid, bool)

    def body(arch, row):
        p, q, v = row
        new = archive_insert(arch, p, q, ref_point)
        return jax.tree.map(lambda a, b: jnp.where(v, a, b), new, arch), None

    archive, _ = jax.lax.scan(
        body, archive, (jnp.asarray(points), jnp.asarray(payloads, jnp.int32), valid)
    )
    return archive


def archive_front(archive: ParetoArchive) -> tuple[np.ndarray, np.ndarray]:
    """Host helper: the archived points `[m, d]` and their payloads `[m]`."""
    mask = np.asarray(archive.mask)
    return np.asarray(archive.points)[mask], np.asarray(archive.payload)[mask]


# ---------------------------------------------------------------------------
# Preference (weight) sets on the simplex
# ---------------------------------------------------------------------------


def simplex_lattice(n_obj: int, step: float | None = None, *, divisions: int | None = None):
    """Das–Dennis simplex lattice: every weight vector `k / H` with non-negative
    integer `k` summing to `H`. Returns float64 `[C(H + n_obj - 1, n_obj - 1), n_obj]`.

    Give either `step` (with `1 / step` an integer `H`) or `divisions = H`.
    Built from integer compositions, so no point is lost to float round-off (the
    C-MORL code's `sum == 1` float filter keeps 62 of the 66 points for 3
    objectives at step 0.1).
    """
    if n_obj < 1:
        raise ValueError(f"simplex_lattice: n_obj must be >= 1, got {n_obj}.")
    if (step is None) == (divisions is None):
        raise ValueError("simplex_lattice: give exactly one of `step` or `divisions`.")
    if step is not None:
        if not (0 < step <= 1):
            raise ValueError(f"simplex_lattice: step must be in (0, 1], got {step}.")
        h = round(1.0 / step)
        if abs(h * step - 1.0) > 1e-9:
            raise ValueError(
                f"simplex_lattice: 1/step must be an integer, got step={step} (1/step={1 / step:.6g})."
            )
        divisions = h
    if divisions < 1:
        raise ValueError(f"simplex_lattice: divisions must be >= 1, got {divisions}.")
    rows = []
    # Stars and bars: choose positions of n_obj - 1 bars among H + n_obj - 1 slots.
    for bars in itertools.combinations(range(divisions + n_obj - 1), n_obj - 1):
        edges = (-1, *bars, divisions + n_obj - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(n_obj)])
    out = np.asarray(rows, dtype=np.float64) / divisions
    assert out.shape[0] == math.comb(divisions + n_obj - 1, n_obj - 1)
    return out


def dirichlet_weights(key: jax.Array, num: int, n_obj: int, alpha: float = 1.0) -> jax.Array:
    """`num` weight vectors drawn from Dirichlet(alpha, ..., alpha): `[num, n_obj]`.

    `alpha = 1` is uniform on the simplex.
    """
    if alpha <= 0:
        raise ValueError(f"dirichlet_weights: alpha must be > 0, got {alpha}.")
    return jax.random.dirichlet(key, jnp.full((n_obj,), alpha), shape=(num,))
