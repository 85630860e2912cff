"""`rlx compare` and the summary by swept value: groups, aggregates against rlx.stats and
hand counts, the plots, bad input in one line; learning-curve bands that say what they are;
metrics.csv's step column and runs written before its rename."""

import json
import os

import numpy as np
import pytest

from rlx import cli, compare, stats
from rlx.logging import MetricsCSV, read_metrics, write_json
from rlx.plotting import band, bootstrap_ci

UPDATES = 40


def fake_run(path, members, final, eval_return=None):
    """A run directory as `rlx train` writes it: member i's return climbs to `final[i]`."""
    os.makedirs(path)
    write_json(os.path.join(path, "config.json"), {"algo": "ppo", "env": "gymnax/CartPole-v1",
                                                   "runner": {"members": members}})  # fmt: skip
    csv = MetricsCSV(os.path.join(path, "metrics.csv"), list(members[0]))
    ramp = np.linspace(0.0, 1.0, UPDATES, dtype=np.float32)
    metrics = {"env_steps": np.tile(np.arange(1, UPDATES + 1) * 64, (len(members), 1)),
               "episode_return": np.stack([ramp * f for f in final]).astype(np.float32)}  # fmt: skip
    csv.append(metrics, members, 0)
    if eval_return is not None:
        write_json(os.path.join(path, "summary.json"), {"eval_return": list(eval_return)})


def sweep_members(lrs, seeds):
    return [{"member": i, "seed": s, "lr": lr} for i, (lr, s) in enumerate((lr, s) for lr in lrs for s in seeds)]


def test_groups_by_swept_value_with_aggregates_from_rlx_stats(tmp_path):
    members = sweep_members([1e-3, 3e-4], range(6))
    final = [100.0 + 10 * i for i in range(6)] + [200.0 + 5 * i for i in range(6)]
    fake_run(str(tmp_path / "sweep"), members, final, eval_return=[v + 1 for v in final])
    groups = compare.compare([str(tmp_path / "sweep")])
    assert [g["label"] for g in groups] == ["lr=0.001", "lr=0.0003"]
    assert [g["members"] for g in groups] == [list(range(6)), list(range(6, 12))]
    # Final return: the mean of the last 5% of 40 updates (2), of a linear ramp to final.
    ramp = np.linspace(0.0, 1.0, UPDATES, dtype=np.float32)
    scores = [np.asarray([np.mean(ramp[-2:] * np.float32(f)) for f in final[k : k + 6]]) for k in (0, 6)]
    for g, s in zip(groups, scores):
        t = g["train"]
        assert t["n"] == 6 and t["mean"] == pytest.approx(s.mean()) and t["iqm"] == pytest.approx(stats.iqm(s))
        assert t["median"] == pytest.approx(np.median(s)) and (t["min"], t["max"]) == pytest.approx((s.min(), s.max()))
        assert t["mean_ci"] == pytest.approx(list(stats.stratified_bootstrap_ci(s, stats.mean, reps=2000, seed=0)))
        assert t["iqm_ci"][0] <= t["iqm"] <= t["iqm_ci"][1]
        assert g["eval"]["mean"] == pytest.approx(np.mean(final[g["members"][0] : g["members"][-1] + 1]) + 1)
    # P(lr=3e-4 beats lr=1e-3): every member of the second group scores higher.
    assert groups[1]["p_improvement"] == 1.0 and groups[0]["p_improvement"] == 0.5
    low, high = groups[1]["p_improvement_ci"]
    assert low <= 1.0 <= high + 1e-12 and groups[0]["p_improvement_ci"] is None


def test_small_groups_get_a_range_not_an_interval(tmp_path):
    fake_run(str(tmp_path / "a"), sweep_members([0.1], range(2)), [10.0, 20.0])
    fake_run(str(tmp_path / "b"), sweep_members([0.1], range(3)), [30.0, 40.0, 50.0])
    groups = compare.compare([str(tmp_path / "a"), str(tmp_path / "b")])
    assert [g["label"] for g in groups] == ["a", "b"]  # one group per run: nothing is swept inside either
    for g in groups:
        assert g["train"]["mean_ci"] == [None, None] and g["p_improvement_ci"] is None
    text = compare.table(groups)
    assert "fewer than 5 members" in text and "95% CI" in text.splitlines()[0]


def test_compare_command_prints_a_table_and_writes_four_files(tmp_path, capsys):
    fake_run(str(tmp_path / "sweep"), sweep_members([1e-3, 3e-4], range(5)), list(range(10, 20)))
    out = str(tmp_path / "cmp")
    assert cli.main(["compare", str(tmp_path / "sweep"), "--by", "lr", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "lr=0.001" in printed and "lr=0.0003" in printed
    from matplotlib import image

    for name in ("learning_curves.png", "aggregates.png"):
        assert image.imread(os.path.join(out, name)).shape[0] > 100
    rows = open(os.path.join(out, "compare.csv")).read().splitlines()
    assert len(rows) == 3 and rows[0].startswith("group,run,n,mean")
    assert [g["label"] for g in json.load(open(os.path.join(out, "compare.json")))["groups"]] == ["lr=0.001", "lr=0.0003"]


def test_compare_bad_inputs_get_one_line(tmp_path, capsys):
    fake_run(str(tmp_path / "sweep"), sweep_members([1e-3], range(2)), [1.0, 2.0])
    assert cli.main(["compare", str(tmp_path / "sweep"), "--by", "gamma", "--out", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--by gamma" in err[0] and "lr, seed" in err[0]
    assert cli.main(["compare", str(tmp_path / "nothing"), "--out", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.json is missing" in err[0]


def test_bands_say_what_they_are():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(2, 7))
    mean, lo, hi, what = band(y)
    np.testing.assert_allclose(mean, y.mean(0))
    np.testing.assert_array_equal(lo, y.min(0))
    np.testing.assert_array_equal(hi, y.max(0))
    assert what == "n=2, band: min-max (too few for a CI)"
    y = rng.normal(size=(6, 7))
    mean, lo, hi, what = band(y)
    for a, b in zip((mean, lo, hi), bootstrap_ci(y)):
        np.testing.assert_array_equal(a, b)
    assert what == "n=6, 95% bootstrap CI"
    assert band(y[:1])[3] == "n=1, no band"


def test_step_column_is_not_shadowed_by_a_dataframe_method(tmp_path):
    pd = pytest.importorskip("pandas")
    from rlx.logging import FIRST_COLUMNS

    assert not [c for c in FIRST_COLUMNS if hasattr(pd.DataFrame, c)]
    assert not hasattr(pd.DataFrame, "generation")  # the ES trainer's step column


def test_runs_written_before_the_rename_read_and_resume_under_the_new_name(tmp_path):
    path = str(tmp_path / "metrics.csv")
    with open(path, "w", newline="") as f:  # as an older rlx wrote it
        f.write("member,seed,update,env_steps,episode_return,loss\r\n0,0,0,64,nan,0.5\r\n0,0,1,128,9.0,0.25\r\n")
    old = read_metrics(path)
    assert "update" not in old and old["update_index"].tolist() == [0, 1]
    csv = MetricsCSV(path, ["member", "seed"])
    csv.repair(2, 1)  # a resume from the checkpoint at update 2
    assert open(path).readline().strip() == "member,seed,update_index,env_steps,episode_return,loss"
    csv.append({"env_steps": np.asarray([[192]]), "episode_return": np.asarray([[11.0]]), "loss": np.asarray([[0.125]])},
               [{"member": 0, "seed": 0}], 2)  # fmt: skip
    new = read_metrics(path)
    assert new["update_index"].tolist() == [0, 1, 2] and new["episode_return"][2] == 11.0
