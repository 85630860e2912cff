"""rlx.stats against closed forms, brute force and scipy; bootstrap coverage at the nominal rate."""

import itertools

import numpy as np
import pytest
import scipy.stats

from rlx import stats


def test_iqm_is_the_mean_of_the_middle_half_of_the_pooled_scores():
    scores = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])  # [runs=4, tasks=2]
    # pooled and sorted: 1 2 3 4 10 20 30 40; the middle four are 3 4 10 20
    assert stats.iqm(scores) == pytest.approx((3 + 4 + 10 + 20) / 4)
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(10, 6))
    middle = np.sort(scores.reshape(-1))[15:45]
    assert stats.iqm(scores) == pytest.approx(middle.mean())
    assert stats.iqm(scores) == pytest.approx(scipy.stats.trim_mean(scores.reshape(-1), 0.25))
    wild, high = scores.copy(), scores.copy()
    wild[0, 0], high[0, 0] = 1e9, scores.max() + 1
    # the top quarter is dropped, so how far one run lies above it changes nothing...
    assert stats.iqm(wild) == pytest.approx(stats.iqm(high))
    assert stats.mean(wild) > 1e6  # ...while the mean is ruined


def test_mean_and_median_are_over_per_task_means():
    scores = np.array([[0.0, 1.0, 10.0], [2.0, 3.0, 30.0]])  # task means 1, 2, 20
    assert stats.mean(scores) == pytest.approx(23 / 3)
    assert stats.median(scores) == pytest.approx(2.0)
    assert np.median(scores) != pytest.approx(2.0)  # the pooled median (2.5) is not rliable's
    assert stats.mean([1.0, 2.0, 6.0]) == pytest.approx(3.0)  # a vector is one task


def test_optimality_gap_clips_scores_at_gamma():
    scores = np.array([[0.5, 2.0], [0.7, 1.0]])
    # min(score, 1): 0.5 1 0.7 1 -> mean 0.8
    assert stats.optimality_gap(scores) == pytest.approx(0.2)
    # min(score, 2): 0.5 2 0.7 1 -> mean 1.05
    assert stats.optimality_gap(scores, gamma=2.0) == pytest.approx(0.95)
    assert stats.optimality_gap(np.full((3, 2), 5.0)) == pytest.approx(0.0)


def test_probability_of_improvement_equals_pair_counting():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 5, size=(7, 3)).astype(float)  # small integers: many ties
    y = rng.integers(0, 5, size=(5, 3)).astype(float)
    per_task = []
    for task in range(3):
        pairs = list(itertools.product(x[:, task], y[:, task]))
        per_task.append(np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs]))
    assert stats.probability_of_improvement(x, y) == pytest.approx(np.mean(per_task))
    assert stats.probability_of_improvement(x, y) + stats.probability_of_improvement(y, x) == pytest.approx(1.0)
    assert stats.probability_of_improvement(x, x) == pytest.approx(0.5)
    assert stats.probability_of_improvement(x + 10, y) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="tasks"):
        stats.probability_of_improvement(x, y[:, :2])


def test_performance_profile_is_the_fraction_of_runs_above_each_threshold():
    rng = np.random.default_rng(3)
    scores = rng.uniform(size=(8, 4))
    taus = np.linspace(-0.1, 1.1, 13)
    profile = stats.performance_profile(scores, taus)
    brute = [sum(s > t for s in scores.reshape(-1)) / scores.size for t in taus]
    np.testing.assert_allclose(profile, brute)
    assert profile[0] == 1.0 and profile[-1] == 0.0
    assert np.all(np.diff(profile) <= 0)


def test_bootstrap_ci_of_a_constant_matrix_is_a_point():
    for statistic in (stats.iqm, stats.mean, stats.median):
        low, high = stats.stratified_bootstrap_ci(np.full((5, 3), 0.25), statistic, reps=200)
        assert low == pytest.approx(0.25) and high == pytest.approx(0.25)


def test_bootstrap_resamples_within_each_task():
    # Each task is constant, the tasks differ: a resample within tasks keeps every task's
    # mean, so the interval of the mean is a point; pooling runs across tasks would not.
    scores = np.tile([0.0, 1.0, 5.0], (6, 1))
    low, high = stats.stratified_bootstrap_ci(scores, stats.mean, reps=300)
    assert low == pytest.approx(2.0) and high == pytest.approx(2.0)
    # Runs within a task do vary here, so the interval has width.
    rng = np.random.default_rng(4)
    low, high = stats.stratified_bootstrap_ci(scores + rng.normal(size=scores.shape), stats.mean, reps=300)
    assert high - low > 0.1


def test_bootstrap_is_seeded_and_takes_several_matrices_and_vector_statistics():
    rng = np.random.default_rng(5)
    x, y = rng.normal(0.5, 1.0, size=(10, 2)), rng.normal(size=(8, 2))
    first = stats.stratified_bootstrap_ci((x, y), stats.probability_of_improvement, reps=200, seed=7)
    assert first == stats.stratified_bootstrap_ci((x, y), stats.probability_of_improvement, reps=200, seed=7)
    assert first != stats.stratified_bootstrap_ci((x, y), stats.probability_of_improvement, reps=200, seed=8)
    assert 0 <= first[0] <= stats.probability_of_improvement(x, y) <= first[1] <= 1
    taus = np.array([-1.0, 0.0, 1.0])
    low, high = stats.stratified_bootstrap_ci(x, lambda s: stats.performance_profile(s, taus), reps=200)
    assert low.shape == high.shape == (3,)
    assert np.all(low <= stats.performance_profile(x, taus)) and np.all(stats.performance_profile(x, taus) <= high)


@pytest.mark.parametrize("confidence", [0.8, 0.95])
def test_bootstrap_ci_covers_the_true_mean_at_about_the_nominal_rate(confidence):
    # 200 samples of 30 runs x 2 tasks from N(1, 1): the percentile interval of the mean
    # should contain 1 in about `confidence` of them (a bit less: n = 30 is small). With
    # 200 trials the binomial standard deviation is 2.8% at 0.8 and 1.5% at 0.95.
    rng = np.random.default_rng(6)
    covered = 0
    for trial in range(200):
        low, high = stats.stratified_bootstrap_ci(rng.normal(1.0, 1.0, size=(30, 2)), np.mean, reps=400, seed=trial,
                                                  confidence=confidence)  # fmt: skip
        covered += low <= 1.0 <= high
    assert confidence - 0.08 <= covered / 200 <= confidence + 0.04


def test_paired_difference_ci_uses_the_pairing():
    rng = np.random.default_rng(7)
    seed_effect = rng.normal(0.0, 10.0, size=20)  # large, shared by both methods per seed
    a = seed_effect + 1.0 + rng.normal(0.0, 0.1, size=20)
    b = seed_effect + rng.normal(0.0, 0.1, size=20)
    low, high = stats.paired_difference_ci(a, b, reps=500)
    assert 0.8 < low < np.mean(a - b) < high < 1.2  # width ~ 4 x 0.1 sqrt(2 / 20)
    assert stats.verdict(low, high, "greater") == "reproduced"
    # Unpaired, the seed effect swamps the difference and the interval contains zero.
    low, high = stats.stratified_bootstrap_ci((a, b), lambda x, y: stats.mean(x) - stats.mean(y), reps=500)
    assert low < 0 < high
    assert stats.paired_difference_ci(b + 0.5, b, reps=100) == pytest.approx((0.5, 0.5))
    with pytest.raises(ValueError, match="same seeds"):
        stats.paired_difference_ci(a, b[:-1])


def test_nested_paired_difference_ci_carries_the_spread_between_groups():
    rng = np.random.default_rng(3)
    # 3 groups (ES seeds) whose own effects differ a lot; 64 paired runs each with little noise.
    group_effect = np.array([0.5, -0.4, 0.3])
    b = rng.normal(0.0, 1.0, size=(3, 64))
    a = b + group_effect[:, None] + rng.normal(0.0, 0.05, size=(3, 64))
    low, high = stats.nested_paired_difference_ci(a, b, reps=2000)
    assert low <= np.mean(a - b) <= high
    # Pooling the 192 pairs as if independent hides the between-group spread: far narrower.
    flat_low, flat_high = stats.paired_difference_ci(a.ravel(), b.ravel(), reps=2000)
    assert (high - low) > 5 * (flat_high - flat_low)
    assert low < group_effect.min() + 0.1 and high > group_effect.max() - 0.1
    # One group: the ordinary paired bootstrap over runs (same width to within resampling noise).
    one_low, one_high = stats.nested_paired_difference_ci(a[:1], b[:1], reps=4000)
    ref_low, ref_high = stats.paired_difference_ci(a[0], b[0], reps=4000)
    assert (one_high - one_low) == pytest.approx(ref_high - ref_low, rel=0.15)


def test_nested_paired_difference_ci_covers_the_true_mean():
    rng = np.random.default_rng(11)
    covered = 0
    for trial in range(200):
        group_effect = rng.normal(0.2, 0.3, size=(8, 1))
        d = group_effect + rng.normal(0.0, 0.5, size=(8, 16))
        low, high = stats.nested_paired_difference_ci(d, np.zeros_like(d), reps=400, seed=trial)
        covered += low <= 0.2 <= high
    # The percentile bootstrap under-covers with 8 groups; it should still be near 95%.
    assert 0.85 <= covered / 200 <= 0.99


def test_difference_test_gives_the_verdict_only_with_enough_seeds():
    rng = np.random.default_rng(5)
    b = rng.normal(0.0, 1.0, size=8)
    t = stats.difference_test(b + 1.0 + rng.normal(0.0, 0.05, size=8), b, "greater")
    assert t["verdict"] == "reproduced" and 0.9 < t["low"] <= t["mean"] <= t["high"] < 1.1
    assert stats.difference_test(b - 1.0, b, "greater")["verdict"] == "contradicted"
    assert stats.difference_test(b[:2] + 1.0, b[:2], "greater", min_units=3)["verdict"] == "not judged (under 3 seeds)"
    g = np.stack([b, b + 0.1, b - 0.1])  # [groups, runs]
    t = stats.difference_test(g + 0.5, g, "less", nested=True)
    assert t["verdict"] == "contradicted" and t["mean"] == pytest.approx(0.5)


def test_nested_paired_difference_ci_bad_input():
    with pytest.raises(ValueError, match="same \\[groups, runs\\]"):
        stats.nested_paired_difference_ci(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        stats.nested_paired_difference_ci(np.full((2, 3), np.nan), np.zeros((2, 3)))


@pytest.mark.parametrize(
    "low, high, direction, expected",
    [
        (0.1, 0.5, "greater", "reproduced"),
        (-0.5, -0.1, "greater", "contradicted"),
        (-0.1, 0.2, "greater", "not reproduced"),
        (0.0, 0.5, "greater", "not reproduced"),  # touching zero does not exclude it
        (-0.5, -0.1, "less", "reproduced"),
        (0.1, 0.5, "less", "contradicted"),
        (-0.2, 0.1, "less", "not reproduced"),
        (-0.5, 0.0, "less", "not reproduced"),
    ],
)
def test_verdict(low, high, direction, expected):
    assert stats.verdict(low, high, direction) == expected


def test_bad_inputs_refuse_in_one_line():
    for call, field in [
        (lambda: stats.verdict(0.1, 0.2, "up"), "direction"),
        (lambda: stats.verdict(0.3, 0.2, "greater"), "interval"),
        (lambda: stats.iqm(np.array([[1.0, np.nan]])), "NaN"),
        (lambda: stats.mean(np.zeros((2, 2, 2))), "shape"),
        (lambda: stats.mean(np.zeros((0, 3))), "shape"),
        (lambda: stats.stratified_bootstrap_ci(np.ones((3, 2)), stats.mean, confidence=1.0), "confidence"),
        (lambda: stats.stratified_bootstrap_ci(np.ones((3, 2)), stats.mean, reps=0), "reps"),
        (lambda: stats.stratified_bootstrap_ci((np.ones((3, 2)), np.ones((3, 1))), stats.mean), "tasks"),
    ]:
        with pytest.raises(ValueError, match=field) as err:
            call()
        assert "\n" not in str(err.value)
