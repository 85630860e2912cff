"""Quality indicators of a Pareto-front approximation (maximisation).

Every indicator takes its reference point, weight set or true front explicitly:
none has a default, because the number depends on it (see `envs/mo` specs for the
values pinned per environment). Compute them on **discounted** evaluation returns
(and report undiscounted ones beside them, labelled).

Host functions (`hypervolume`, `expected_utility`, `sparsity`, `cardinality`,
`igd`, `maximum_utility_loss`) validate their input, raise a ValueError on bad
input (never return NaN), and return Python floats computed in float64.
The kernels `hypervolume_2d`, `hypervolume_3d` and `expected_utility` also run on
jax arrays inside `jit`/`vmap`, with a mask for padded fronts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rlx.pareto import (
    _xp,
    check_front,
    check_ref_point,
    check_weights,
    non_dominated_mask,
)


def _cummax(x, xp):
    if xp is np:
        return np.maximum.accumulate(x, axis=-1)
    return jax.lax.cummax(x, axis=x.ndim - 1)


# ---------------------------------------------------------------------------
# Hypervolume
# ---------------------------------------------------------------------------


def hypervolume_2d(front, ref_point, mask=None):
    """Exact 2-D hypervolume dominated by `front: [..., n, 2]` above `ref_point: [2]`.

    A sweep in decreasing first objective: the area is
    `sum_i (x_(i) - x_(i+1)) * (max_{j<=i} y_(j) - r_y)` with `x_(n+1) = r_x`.
    Points not strictly above the reference point in both objectives (and rows
    with `mask: [..., n] == False`) are moved onto it, where they add nothing.
    Batched over leading axes; jittable; numpy inputs stay float64.
    """
    xp = _xp(front, ref_point, mask)
    front = xp.asarray(front)
    ref = xp.asarray(ref_point, dtype=front.dtype)
    ok = xp.all(front > ref, axis=-1)
    if mask is not None:
        ok = ok & xp.asarray(mask, dtype=bool)
    x = xp.where(ok, front[..., 0], ref[0])
    y = xp.where(ok, front[..., 1], ref[1])
    order = xp.argsort(-x, axis=-1)
    xs = xp.take_along_axis(x, order, axis=-1)
    ys = xp.take_along_axis(y, order, axis=-1)
    height = _cummax(ys, xp) - ref[1]
    x_next = xp.concatenate([xs[..., 1:], xp.zeros_like(xs[..., :1]) + ref[0]], axis=-1)
    return xp.sum((xs - x_next) * height, axis=-1)


def hypervolume_3d(front, ref_point, mask=None):
    """Exact 3-D hypervolume of `front: [n, 3]` above `ref_point: [3]`.

    Slicing along the third objective: with the points sorted by decreasing
    `z`, the volume is `sum_k (z_(k) - z_(k+1)) * HV2(first k points in (x, y))`,
    `z_(n+1) = r_z`. All `n` prefix areas are one batched `hypervolume_2d`, so
    this is O(n^2 log n) time and O(n^2) memory; fine for archives of a few
    thousand points. Jittable; numpy inputs stay float64.
    """
    xp = _xp(front, ref_point, mask)
    front = xp.asarray(front)
    ref = xp.asarray(ref_point, dtype=front.dtype)
    n = front.shape[0]
    ok = xp.all(front > ref, axis=-1)
    if mask is not None:
        ok = ok & xp.asarray(mask, dtype=bool)
    pts = xp.where(ok[:, None], front, ref[None, :])
    pts = pts[xp.argsort(-pts[:, 2])]
    z = pts[:, 2]
    z_next = xp.concatenate([z[1:], ref[2:3]])
    idx = xp.arange(n)
    prefix = idx[None, :] <= idx[:, None]  # prefix[k, j]: point j is among the first k+1
    xy = xp.broadcast_to(pts[None, :, :2], (n, n, 2))
    areas = hypervolume_2d(xy, ref[:2], prefix)
    return xp.sum((z - z_next) * areas)


def hypervolume(front, ref_point) -> float:
    """Hypervolume dominated by `front: [n, d]` above `ref_point: [d]` (maximisation).

    Exact for every `d`: the 2-D sweep and 3-D slicing above (float64 numpy) for
    d <= 3, moocore's exact algorithms on the host for d >= 4. Equal to pymoo's
    `HV(ref_point=-ref_point)(-front)`. Points that are not strictly above the
    reference point contribute nothing. Never call this in a training loop.
    """
    arr = check_front(front)
    d = arr.shape[1]
    ref = check_ref_point(ref_point, d)
    if d == 1:
        return float(max(0.0, float(np.max(arr[:, 0] - ref[0]))))
    if d == 2:
        return float(hypervolume_2d(arr, ref))
    if d == 3:
        return float(hypervolume_3d(arr, ref))
    import moocore  # host-only dependency, imported lazily

    above = arr[np.all(arr > ref, axis=1)]
    if above.shape[0] == 0:
        return 0.0
    return float(moocore.hypervolume(above, ref=ref, maximise=True))


# ---------------------------------------------------------------------------
# Utility-based indicators
# ---------------------------------------------------------------------------


def _expected_utility_kernel(front, weights, mask=None):
    xp = _xp(front, weights, mask)
    utilities = weights @ front.T  # [W, n]
    if mask is not None:
        utilities = xp.where(xp.asarray(mask, dtype=bool)[None, :], utilities, -np.inf)
    return xp.mean(xp.max(utilities, axis=1))


def expected_utility(front, weights, mask=None):
    """Expected utility `EU = mean_{w in W} max_{p in front} w . p`.

    front: `[n, d]`; weights: `[W, d]` on the simplex; mask: `[n]` (at least one
    True). With numpy / list inputs this validates and returns a float64 float;
    with jax arrays it is a jittable kernel (shapes are still checked, values are
    checked when concrete).
    """
    if isinstance(front, jax.Array) or isinstance(weights, jax.Array):
        if front.ndim != 2 or front.shape[0] == 0:
            raise ValueError(f"front: expected a non-empty [n, d] array, got shape {front.shape}.")
        check_weights(weights, front.shape[1])
        w = jnp.atleast_2d(jnp.asarray(weights, front.dtype))
        return _expected_utility_kernel(front, w, mask)
    arr = check_front(front)
    w = np.atleast_2d(check_weights(np.asarray(weights, np.float64), arr.shape[1]))
    if mask is not None:
        mask = np.asarray(mask, bool)
        if not mask.any():
            raise ValueError("expected_utility: the mask selects no point of the front.")
    return float(_expected_utility_kernel(arr, w, mask))


def maximum_utility_loss(front, true_front, weights) -> float:
    """Maximum utility loss `MUL = max_w [max_{q in true} w.q - max_{p in front} w.p]`.

    front: `[n, d]`, true_front: `[m, d]` (the known Pareto front, or the best
    available approximation), weights: `[W, d]`. Zero when `front` contains the
    true front's linearly supported points. Host function, float64.
    """
    arr = check_front(front)
    true = check_front(true_front, name="true_front")
    if true.shape[1] != arr.shape[1]:
        raise ValueError(
            f"true_front has {true.shape[1]} objectives but front has {arr.shape[1]}."
        )
    w = np.atleast_2d(check_weights(np.asarray(weights, np.float64), arr.shape[1]))
    loss = np.max(w @ true.T, axis=1) - np.max(w @ arr.T, axis=1)
    return float(np.max(loss))


# ---------------------------------------------------------------------------
# Distribution and distance indicators
# ---------------------------------------------------------------------------


def sparsity(front) -> float:
    """Sparsity as defined by PGMORL (Xu et al. 2020), lower is better:

        SP = 1 / (|F| - 1) * sum_j sum_i (F~[i+1, j] - F~[i, j])^2,

    with `F~` the front sorted separately in each objective. Computed on the
    non-dominated, de-duplicated points of `front: [n, d]`. A single point has
    SP = 0, so always report sparsity beside hypervolume.
    """
    arr = check_front(front)
    arr = arr[non_dominated_mask(arr)]
    if arr.shape[0] < 2:
        return 0.0
    sorted_front = np.sort(arr, axis=0)
    return float(np.sum(np.diff(sorted_front, axis=0) ** 2) / (arr.shape[0] - 1))


def cardinality(front) -> int:
    """Number of distinct non-dominated points in `front: [n, d]`."""
    arr = check_front(front)
    return int(np.sum(non_dominated_mask(arr)))


def igd(front, true_front) -> float:
    """Inverted generational distance: the mean over points `q` of `true_front: [m, d]`
    of the Euclidean distance from `q` to the nearest point of `front: [n, d]`.
    Lower is better; 0 iff every true point is found."""
    arr = check_front(front)
    true = check_front(true_front, name="true_front")
    if true.shape[1] != arr.shape[1]:
        raise ValueError(
            f"true_front has {true.shape[1]} objectives but front has {arr.shape[1]}."
        )
    dist = np.linalg.norm(true[:, None, :] - arr[None, :, :], axis=-1)  # [m, n]
    return float(np.mean(np.min(dist, axis=1)))
