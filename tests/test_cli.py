"""The command line: a tiny end-to-end run with every output, resume, and bad input
rejected before anything compiles."""

import json
import os
import time

import numpy as np
import pytest

from rlx import cli
from rlx.logging import read_metrics

TINY = ["--num-envs", "4", "--num-steps", "16", "--total-steps", "384", "--num-minibatches", "2", "--update-epochs", "1"]


def test_train_writes_every_output_and_resumes(tmp_path):
    out = str(tmp_path / "run")
    args = ["train", "ppo", "--env", "gymnax/CartPole-v1", "--seeds", "2", "--out", out, "--chunks", "3",
            "--no-progress", "--eval-episodes", "2", "--eval-every", "2", "--set", "lr=1e-3"] + TINY  # fmt: skip
    assert cli.main(args) == 0
    for name in ("config.json", "versions.json", "metrics.csv", "learning_curve.png", "summary.json"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    assert os.listdir(os.path.join(out, "checkpoints"))
    spec = json.load(open(os.path.join(out, "config.json")))
    assert spec["config"]["lr"] == 1e-3 and spec["config"]["num_envs"] == 4
    assert json.load(open(os.path.join(out, "versions.json")))["jax"]
    m = read_metrics(os.path.join(out, "metrics.csv"))
    assert {"seed", "env_steps", "episode_return", "update", "loss"} <= set(m)
    assert len(m["update"]) == 2 * 6 and sorted(set(m["seed"])) == [0.0, 1.0]
    assert len(json.load(open(os.path.join(out, "summary.json")))["eval_return"]) == 2
    # evaluation after chunks 2 and 3 (the last) of 3 chunks of 2 updates: rows 3 and 5 per member
    evaluated = np.flatnonzero(np.isfinite(m["eval_return"]))
    for member in (0, 1):
        rows = evaluated[m["member"][evaluated] == member]
        np.testing.assert_array_equal(np.sort(m["update"][rows]), [3, 5])
    assert np.all(m["eval_return"][evaluated] >= 1) and os.path.exists(os.path.join(out, "eval_curve.png"))
    # Resuming a finished run runs nothing more and keeps every row.
    assert cli.main(["train", "--resume", out, "--no-progress", "--eval-episodes", "0"]) == 0
    assert len(read_metrics(os.path.join(out, "metrics.csv"))["update"]) == 12


def test_sweep_over_a_traced_field(tmp_path):
    out = str(tmp_path / "sweep")
    assert cli.main(["sweep", "ppo", "--env", "gymnax/CartPole-v1", "--seeds", "1", "--grid", "clip_eps=0.1,0.3",
                     "--out", out, "--no-progress", "--eval-episodes", "0"] + TINY) == 0  # fmt: skip
    m = read_metrics(os.path.join(out, "metrics.csv"))
    np.testing.assert_allclose(sorted(set(m["clip_eps"])), [0.1, 0.3])


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "pppo", "--env", "gymnax/CartPole-v1"], r"unknown algorithm 'pppo'\. Did you mean ppo\?"),
        (["train", "ppo", "--env", "gymnax/CartPol-v1"], r"unknown environment 'gymnax/CartPol-v1'\. Did you mean: gymnax/CartPole-v1"),
        (["train", "ppo", "--env", "gymnax/CartPole-v1", "--lr", "-1"], r"PPOConfig\.lr = -1\.0 is invalid: it must be > 0"),
        (["train", "ppo", "--env", "gymnax/CartPole-v1", "--num-minibatches", "3"], r"num_minibatches = 3 is invalid: it must divide"),
        (["train", "ppo", "--env", "gymnax/CartPole-v1", "--seeds", "3", "--devices", "2"], r"population size 3 is not divisible by devices = 2"),
        (["train", "ppo", "--env", "gymnax/CartPole-v1", "--set", "lr"], r"must look like KEY=VALUE"),
        (["sweep", "ppo", "--env", "gymnax/CartPole-v1", "--grid", "num_envs=4,8"], r"num_envs is a static field"),
        (["train", "--resume", "/nonexistent/run"], r"no config\.json there"),
    ],
)
def test_bad_input_fails_fast_with_a_clear_message(args, message, tmp_path):
    start = time.perf_counter()
    with pytest.raises((SystemExit, ValueError), match=message):
        cli.main(args + ["--out", str(tmp_path / "x"), "--no-progress"])
    assert time.perf_counter() - start < 5.0, "the error must come before any compilation"
