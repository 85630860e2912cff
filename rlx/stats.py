"""Aggregate statistics over runs, with confidence intervals that account for few seeds.

The definitions are rliable's (Agarwal et al., 2021, "Deep RL at the edge of the
statistical precipice"), written out here because rliable 1.2.0 no longer imports with
current versions of its `arch` dependency. Scores are numpy matrices `[runs, tasks]`:
one row per run (seed), one column per task (env, or any other fixed condition), best
normalised so that tasks are comparable. Every aggregate maps such a matrix to a float.

    low, high = stratified_bootstrap_ci(scores, iqm)            # 95% interval of the IQM
    low, high = paired_difference_ci(ours, baseline)            # same seeds, per-seed pairs
    verdict(low, high, "greater")                               # "reproduced", ...
"""

from __future__ import annotations

from typing import Callable

import numpy as np

VERDICTS = ("reproduced", "contradicted", "not reproduced")
DIRECTIONS = ("greater", "less")


def _matrix(scores, name: str = "scores") -> np.ndarray:
    """`scores` as a float matrix `[runs, tasks]`; a vector `[runs]` is one task."""
    x = np.asarray(scores, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} has shape {np.shape(scores)}: it must be [runs, tasks] with at least one of each.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds {int(np.sum(~np.isfinite(x)))} NaN or infinite entries: "
                         "drop or fill the runs that have no score before aggregating.")  # fmt: skip
    return x


# -- aggregates: [runs, tasks] -> float ------------------------------------------------------------
def iqm(scores) -> float:
    """Interquartile mean: the mean of the middle 50% of all scores, pooled over runs and
    tasks (the lowest and highest 25% are dropped). `[runs, tasks]` -> float."""
    from scipy.stats import trim_mean

    return float(trim_mean(_matrix(scores), proportiontocut=0.25, axis=None))


def mean(scores) -> float:
    """Mean over tasks of each task's mean over runs. `[runs, tasks]` -> float."""
    return float(np.mean(np.mean(_matrix(scores), axis=0)))


def median(scores) -> float:
    """Median over tasks of each task's mean over runs (rliable's: not the median of
    the pooled scores). `[runs, tasks]` -> float."""
    return float(np.median(np.mean(_matrix(scores), axis=0)))


def optimality_gap(scores, gamma: float = 1.0) -> float:
    """How far scores fall short of `gamma`, on average: `gamma - mean(min(score, gamma))`.
    Scores above `gamma` count as `gamma`, so exceeding it on one task does not hide a
    shortfall on another. `[runs, tasks]` -> float."""
    return float(gamma - np.mean(np.minimum(_matrix(scores), gamma)))


def probability_of_improvement(x, y) -> float:
    """P(X > Y) + 0.5 P(X = Y) for a random run X of `x` and Y of `y` on the same task,
    averaged over tasks: the Mann-Whitney U statistic over the `runs_x * runs_y` pairs.
    `x: [runs_x, tasks]`, `y: [runs_y, tasks]` -> float in [0, 1]."""
    from scipy.stats import mannwhitneyu

    x, y = _matrix(x, "x"), _matrix(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} tasks and y has {y.shape[1]}: both must score the same tasks.")
    per_task = []
    for task in range(x.shape[1]):
        if np.array_equal(x[:, task], y[:, task]):
            per_task.append(0.5)  # mannwhitneyu refuses identical samples; every pair ties
        else:
            u = mannwhitneyu(x[:, task], y[:, task], alternative="greater").statistic
            per_task.append(u / (x.shape[0] * y.shape[0]))
    return float(np.mean(per_task))


def performance_profile(scores, taus) -> np.ndarray:
    """The fraction of all runs (pooled over tasks) whose score exceeds each threshold.
    `scores: [runs, tasks]`, `taus: [T]` -> `[T]`, non-increasing in tau."""
    x = _matrix(scores)
    return np.array([np.mean(x > tau) for tau in np.asarray(taus, dtype=float).reshape(-1)])


# -- intervals -------------------------------------------------------------------------------------
def _percentile_interval(samples: np.ndarray, confidence: float) -> tuple:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence = {confidence} is invalid: it must lie strictly between 0 and 1.")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    if np.ndim(low) == 0:
        return float(low), float(high)
    return low, high


def stratified_bootstrap_ci(
    scores,
    statistic: Callable[..., float],
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple:
    """A percentile bootstrap interval of `statistic(scores)`.

    Each of the `reps` resamples draws runs with replacement independently within each
    task (the stratified bootstrap), so every task keeps its number of runs and no task
    can vanish from a resample. `scores: [runs, tasks]`, or a tuple of such numpy
    matrices (same tasks, any runs each) for a statistic of several, e.g.
    `stratified_bootstrap_ci((x, y), probability_of_improvement)`, each resampled on
    its own. Returns `(low, high)`: floats, or arrays shaped like the statistic's value
    (e.g. `[T]` for `lambda s: performance_profile(s, taus)`).
    """
    # Only a tuple of arrays means several matrices: a nested list is one matrix.
    several = isinstance(scores, tuple) and len(scores) > 0 and all(isinstance(s, np.ndarray) for s in scores)
    matrices = [_matrix(s) for s in (scores if several else [scores])]
    if len({m.shape[1] for m in matrices}) != 1:
        raise ValueError(f"the score matrices have {[m.shape[1] for m in matrices]} tasks: they must score the same tasks.")
    if int(reps) < 1:
        raise ValueError(f"reps = {reps} is invalid: it must be >= 1.")
    rng = np.random.default_rng(seed)
    # idx[r, i, j]: the run that fills row i of task j in resample r
    resampled = []
    for m in matrices:
        runs, tasks = m.shape
        idx = rng.integers(0, runs, size=(int(reps), runs, tasks))
        resampled.append(m[idx, np.arange(tasks)])  # [reps, runs, tasks]
    samples = np.asarray([statistic(*(r[i] for r in resampled)) for i in range(int(reps))], dtype=float)
    return _percentile_interval(samples, confidence)


def paired_difference_ci(a, b, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of `a - b`, for results paired by seed
    (row i of `a` and of `b` come from the same seed, so seed-to-seed variation cancels).
    Rows are resampled jointly, within each task. `a, b: [runs]` or `[runs, tasks]`,
    same shape -> `(low, high)`."""
    a, b = _matrix(a, "a"), _matrix(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a has shape {a.shape} and b has {b.shape}: paired results need the same seeds and tasks.")
    return stratified_bootstrap_ci(a - b, mean, reps=reps, confidence=confidence, seed=seed)


def nested_paired_difference_ci(a, b, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """A two-stage percentile bootstrap interval of the mean of `a - b` when the pairs are
    grouped: `a, b: [groups, runs]`, e.g. `[ES seeds, held-out levels]` for two learned
    rules meta-trained from the same ES seed and tested on the same levels. Each resample
    draws groups with replacement, then runs with replacement within each drawn group, so
    the interval carries the spread between groups (another ES seed finds another rule)
    as well as within them. With one group it is the paired bootstrap over runs."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 2 or min(a.shape) < 1:
        raise ValueError(f"a has shape {a.shape} and b has {b.shape}: both must be the same [groups, runs].")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("a or b holds NaN or infinite entries: drop the failed runs first.")
    if int(reps) < 1:
        raise ValueError(f"reps = {reps} is invalid: it must be >= 1.")
    d = a - b
    g, r = d.shape
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, g, size=(int(reps), g))  # [reps, g]
    runs = rng.integers(0, r, size=(int(reps), g, r))  # [reps, g, r]
    samples = d[groups[:, :, None], runs].mean(axis=(1, 2))
    return _percentile_interval(samples, confidence)


def verdict(low: float, high: float, direction: str) -> str:
    """What an interval `[low, high]` of a difference (ours minus the reference) says about
    a claim that it is positive ("greater") or negative ("less"): "reproduced" when it
    excludes zero on the claimed side, "contradicted" when it excludes zero on the other,
    "not reproduced" when it contains zero (too few seeds to tell, or no effect)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction = {direction!r} is invalid: accepted values are {', '.join(DIRECTIONS)}.")
    if not (np.isfinite(low) and np.isfinite(high)) or low > high:
        raise ValueError(f"the interval [{low}, {high}] is invalid: it needs finite ends with low <= high.")
    sign = 1.0 if direction == "greater" else -1.0
    low, high = sorted((sign * low, sign * high))
    if low > 0:
        return "reproduced"
    if high < 0:
        return "contradicted"
    return "not reproduced"


def difference_test(a, b, direction: str, nested: bool = False, min_units: int = 3) -> dict:
    """A claim about paired results tested: the mean of `a - b`, its 95% bootstrap interval
    and the verdict for `direction` ("greater": a above b). `a, b: [seeds]` paired by seed,
    or with `nested` `[groups, runs]` (`nested_paired_difference_ci`). Fewer than
    `min_units` seeds (or groups) get no verdict: a bootstrap of 2 or 3 values has a
    handful of distinct resamples. Returns `{mean, low, high, verdict}`."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    low, high = (nested_paired_difference_ci if nested else paired_difference_ci)(a, b)
    units = a.shape[0]
    judged = verdict(low, high, direction) if units >= min_units else f"not judged (under {min_units} seeds)"
    return dict(mean=float(np.mean(a - b)), low=float(low), high=float(high), verdict=judged)


__all__ = [
    "iqm", "mean", "median", "optimality_gap", "probability_of_improvement", "performance_profile",
    "stratified_bootstrap_ci", "paired_difference_ci", "nested_paired_difference_ci", "verdict", "difference_test",
]  # fmt: skip
