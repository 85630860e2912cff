"""HPO for MORL: search-space checks, a batch of trials as one compiled population
(common random numbers, no recompiles), random search and optuna's TPE at equal budget."""

from __future__ import annotations

import numpy as np
import pytest

from rlx import envs
from rlx.agents.morl import hpo, moppo
from rlx.testing import count_compiles

TINY = dict(num_envs=4, num_steps=16, total_steps=4 * 16 * 8, num_minibatches=2, update_epochs=2, normalize_obs=True)
SPACE = {"lr": hpo.Param(1e-4, 1e-2, log=True), "ent_coef": hpo.Param(0.0, 0.05)}


def test_param_sampling_and_bad_spaces():
    rng = np.random.default_rng(0)
    xs = np.array([hpo.Param(1e-4, 1e-2, log=True).sample(rng) for _ in range(2000)])
    assert xs.min() >= 1e-4 and xs.max() <= 1e-2
    assert abs(np.mean(np.log10(xs)) + 3.0) < 0.05  # log-uniform: mean exponent -3
    with pytest.raises(ValueError, match="low < high"):
        hpo.Param(1.0, 1.0)
    with pytest.raises(ValueError, match="low > 0"):
        hpo.Param(0.0, 1.0, log=True)
    cfg = moppo.MOPPOConfig(weights=(0.5, 0.5), **TINY)
    with pytest.raises(ValueError, match="static field"):
        hpo.check_space(cfg, {"num_envs": hpo.Param(1, 8)})
    with pytest.raises(ValueError, match="no field"):
        hpo.check_space(cfg, {"learning_rate": hpo.Param(1e-4, 1e-3)})
    with pytest.raises(ValueError, match="set by the MORL method"):
        hpo.check_space(cfg, {"weights": hpo.Param(0.0, 1.0)})
    with pytest.raises(ValueError, match="lr"):
        hpo.check_space(cfg, {"lr": hpo.Param(-1.0, 1e-3)})
    with pytest.raises(ValueError, match="empty"):
        hpo.check_space(cfg, {})


@pytest.fixture(scope="module")
def evaluator():
    env, params = envs.make("rlx/deep-sea-treasure")
    cfg = moppo.MOPPOConfig(weights=(0.5, 0.5), **TINY)
    return hpo.TrialEvaluator(env, params, cfg, SPACE, batch_size=4, seeds=2, divisions=1, devices=2)


def test_a_batch_is_one_program_with_common_random_numbers(evaluator):
    a, b = {"lr": 3e-3, "ent_coef": 0.01}, {"lr": 1e-4, "ent_coef": 0.0}
    first = evaluator([a, b, a], 0)
    assert [r["trial"] for r in first] == [0, 1, 2]
    assert first[0]["hypervolume"] == first[2]["hypervolume"]  # same trial, same keys: same score
    for r in first:
        assert r["hypervolume"] >= 0 and np.isfinite(r["expected_utility"])
    with count_compiles() as compiles:
        second = evaluator([b, a, b, a], 3)
    assert not compiles  # a new batch of hyperparameters reuses the compiled program
    assert second[1]["hypervolume"] == first[0]["hypervolume"]
    assert second[0]["hypervolume"] == first[1]["hypervolume"]
    assert evaluator.env_steps_per_batch == 4 * 2 * 2 * 8 * 64


def test_random_and_optuna_search_at_equal_budget(evaluator):
    pytest.importorskip("optuna")
    for search in (hpo.random_search, hpo.optuna_search):
        records = search(evaluator, num_trials=8, seed=0)
        assert len(records) == 8 and [r["trial"] for r in records] == list(range(8))
        best = [r["best_hypervolume"] for r in records]
        assert best == list(np.maximum.accumulate([r["hypervolume"] for r in records]))
        for r in records:
            assert set(SPACE) <= set(r) and 1e-4 <= r["lr"] <= 1e-2 and 0.0 <= r["ent_coef"] <= 0.05
    # Same seed, same proposals: the search is reproducible.
    again = hpo.random_search(evaluator, num_trials=4, seed=0)
    assert [r["lr"] for r in again] == [r["lr"] for r in hpo.random_search(evaluator, num_trials=4, seed=0)]
