"""The command line: a tiny end-to-end run with every output, resume, and bad input
rejected before anything compiles."""

import json
import os
import re
import subprocess
import sys
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
    assert json.load(open(os.path.join(out, "versions.json")))["segments"][0]["jax"]
    m = read_metrics(os.path.join(out, "metrics.csv"))
    assert {"seed", "env_steps", "episode_return", "update_index", "loss"} <= set(m)
    assert len(m["update_index"]) == 2 * 6 and sorted(set(m["seed"])) == [0.0, 1.0]
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert len(summary["eval_return"]) == 2
    # The start-up split: every phase before the first update, each a time >= 0 (the
    # process's age is read from /proc on Linux; in-process here, it is the test's).
    startup = summary["timings"]["startup"]
    assert set(startup) == {"python_imports_and_parsing_s", "env_s", "agent_and_runner_s", "init_s", "compile_s"}
    assert all(v is None or v >= 0 for v in startup.values()) and startup["compile_s"] > 0
    # evaluation after chunks 2 and 3 (the last) of 3 chunks of 2 updates: rows 3 and 5 per member
    evaluated = np.flatnonzero(np.isfinite(m["eval_return"]))
    for member in (0, 1):
        rows = evaluated[m["member"][evaluated] == member]
        np.testing.assert_array_equal(np.sort(m["update_index"][rows]), [3, 5])
    assert np.all(m["eval_return"][evaluated] >= 1) and os.path.exists(os.path.join(out, "eval_curve.png"))
    # Resuming a finished run runs nothing more and keeps every row; it adds a versions segment.
    assert cli.main(["train", "--resume", out, "--no-progress"]) == 0
    assert len(read_metrics(os.path.join(out, "metrics.csv"))["update_index"]) == 12
    assert [s["first_update"] for s in json.load(open(os.path.join(out, "versions.json")))["segments"]] == [0, 6]


def test_sweep_over_a_traced_field(tmp_path, capsys):
    out = str(tmp_path / "sweep")
    assert cli.main(["sweep", "ppo", "--env", "gymnax/CartPole-v1", "--seeds", "2", "--grid", "clip_eps=0.1,0.3",
                     "--out", out, "--no-progress", "--eval-episodes", "0"] + TINY) == 0  # fmt: skip
    m = read_metrics(os.path.join(out, "metrics.csv"))
    np.testing.assert_allclose(sorted(set(m["clip_eps"])), [0.1, 0.3])
    # The summary is grouped by swept value: one line per clip_eps, over its 2 seeds.
    summary = json.load(open(os.path.join(out, "summary.json")))
    groups = {g["group"]: g for g in summary["groups"]}
    assert sorted(groups) == ["clip_eps=0.1", "clip_eps=0.3"]
    printed = capsys.readouterr().out
    for label, g in groups.items():
        finals = [summary["final_train_return"][i] for i in g["members"]]
        assert [summary["members"][i]["clip_eps"] for i in g["members"]] == [float(label.split("=")[1])] * 2
        assert g["final_train_return"]["mean"] == pytest.approx(np.mean(finals))
        assert f"  {label}: n=2, final training return {np.mean(finals):.1f} [{min(finals):.1f}, {max(finals):.1f}]" in printed


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "pppo", "--env", "gymnax/CartPole-v1"], r"unknown algorithm 'pppo'\. Did you mean ppo, moppo\?"),
        (["train", "ppo", "--env", "gymnax/CartPol-v1"], r"unknown environment 'gymnax/CartPol-v1'\. Did you mean: gymnax/CartPole-v1"),
        (["train", "ppo", "--env", "gymnax/CartPole-v1", "--lr", "-1"], r"PPOConfig\.lr = -1\.0 is invalid: it must be > 0"),
        (["train", "ppo", "--env", "gymnax/CartPole-v1", "--num-minibatches", "3"], r"num_minibatches = 3 is invalid: it must divide"),
        (["train", "ppo", "--env", "gymnax/CartPole-v1", "--seeds", "3", "--devices", "2"], r"population size 3 is not divisible by devices = 2"),
        (["train", "ppo", "--env", "gymnax/CartPole-v1", "--set", "lr"], r"must look like KEY=VALUE"),
        (["train", "ppo", "--env", "gymnax/CartPole-v1", "--map-batch-size", "0"], r"--map-batch-size: '0' is invalid: it must be an integer >= 1"),
        (["sweep", "ppo", "--env", "gymnax/CartPole-v1", "--grid", "lrr=1e-3,1e-2"], r"PPOConfig has no field 'lrr'\. Did you mean lr\?"),
        (["sweep", "ppo,dqn", "--env", "gymnax/CartPole-v1", "--grid", "clip_eps=0.1,0.2"], r"DQNConfig has no field 'clip_eps'"),
        (["sweep", "ppo,dqn", "--env", "gymnax/CartPole-v1", "--set", "clip_eps=0.1"], r"DQNConfig has no field 'clip_eps'"),
        (["sweep", "ppo", "--env", "gymnax/CartPole-v1", "--grid", "num_envs=2,0"], r"num_envs = 0 is invalid: it must be >= 1"),
        (["sweep", "ppo", "--env", "gymnax/CartPole-v1", "--grid", "num_envs=2,4", "--launcher-kwargs", "a=1"], r"the local launcher takes no --launcher-kwargs"),
        (["train", "--resume", "/nonexistent/run"], r"no config\.json there"),
    ],
)
def test_bad_input_fails_fast_with_a_clear_message(args, message, tmp_path, capsys, monkeypatch):
    refuse_to_compile(monkeypatch)
    assert cli.main(args + ["--out", str(tmp_path / "x"), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and re.search(message, err), err


def refuse_to_compile(monkeypatch):
    """Make the Runner's train programs fail if anything gets as far as compiling them."""
    from rlx.train import Runner

    def compiled(*a, **k):
        raise AssertionError("reached compilation")

    monkeypatch.setattr(Runner, "_init_fn", compiled)
    monkeypatch.setattr(Runner, "_chunk_fn", compiled)


# -- sweeps over devices and over static fields --------------------------------------------
@pytest.mark.slow  # 45-75 s; test_ppo.py's population on 8 devices = 1 device runs by default
def test_sweep_on_8_devices_equals_1_device(tmp_path):
    """The same sweep spread over 8 fake devices and on 1 device: identical metrics."""
    base = ["sweep", "ppo", "--env", "gymnax/CartPole-v1", "--seeds", "4", "--grid", "lr=1e-3,3e-3", "--no-progress",
            "--eval-episodes", "0", "--chunks", "2"] + TINY  # fmt: skip
    for devices in ("8", "1"):
        assert cli.main(base + ["--out", str(tmp_path / devices), "--devices", devices]) == 0
    eight, one = (open(tmp_path / d / "metrics.csv").read() for d in ("8", "1"))
    assert eight == one and len(eight.splitlines()) == 1 + 8 * 6
    # Members vmapped 4 at a time (memory for 4 in flight): equal up to float reordering.
    assert cli.main(base + ["--out", str(tmp_path / "b4"), "--devices", "1", "--map-batch-size", "4"]) == 0
    a, b = read_metrics(str(tmp_path / "1" / "metrics.csv")), read_metrics(str(tmp_path / "b4" / "metrics.csv"))
    for k in ("loss", "episode_return", "env_steps"):
        np.testing.assert_allclose(b[k], a[k], rtol=1e-3, atol=1e-4, err_msg=k)


def test_static_grid_is_grouped_into_one_program_per_group(tmp_path):
    """num_envs is static: two groups, each its own `rlx sweep` process over the traced grid."""
    out = tmp_path / "static"
    args = ["sweep", "ppo", "--env", "gymnax/CartPole-v1", "--seeds", "1", "--grid", "num_envs=2,4",
            "--grid", "lr=1e-3,3e-3", "--out", str(out), "--no-progress", "--eval-episodes", "0", "--chunks", "1",
            "--num-steps", "16", "--total-steps", "128", "--num-minibatches", "1", "--update-epochs", "1"]  # fmt: skip
    assert cli.main(args) == 0
    groups = json.load(open(out / "sweep.json"))["groups"]
    assert [(g["label"], g["static"], g["returncode"]) for g in groups] == [
        ("ppo_num_envs=2", {"num_envs": "2"}, 0), ("ppo_num_envs=4", {"num_envs": "4"}, 0)]
    m = read_metrics(str(out / "metrics.csv"))
    for num_envs, updates in ((2, 4), (4, 2)):  # 128 steps per member: 128 / (num_envs * 16) updates
        rows = m["num_envs"] == num_envs
        assert rows.sum() == 2 * updates  # 2 learning rates x updates
        np.testing.assert_array_equal(np.unique(np.diff(m["env_steps"][rows & (m["member"] == 0)])), [num_envs * 16])
        np.testing.assert_allclose(sorted(set(m["lr"][rows])), [1e-3, 3e-3])
        assert json.load(open(out / f"ppo_num_envs={num_envs}" / "config.json"))["config"]["num_envs"] == num_envs


def test_static_groups_of_several_algorithms_and_tuple_values():
    """Grouping only (nothing runs): algorithms x static values, traced grid kept per group."""
    args, _ = cli._parser(None).parse_known_args(["sweep", "ppo,dqn", "--env", "gymnax/CartPole-v1", "--grid",
                                                  "hidden=32,32;64", "--grid", "lr=1e-3,1e-2", "--out", "o"])  # fmt: skip
    argv = ["sweep", "ppo,dqn", "--env", "gymnax/CartPole-v1", "--grid", "hidden=32,32;64", "--grid", "lr=1e-3,1e-2",
            "--out", "o", "--total-steps", "20000"]  # fmt: skip
    groups = cli._static_groups(args, argv)
    assert [g["label"] for g in groups] == ["ppo_hidden=32-32", "ppo_hidden=64", "dqn_hidden=32-32", "dqn_hidden=64"]
    assert groups[0]["argv"] == ["sweep", "ppo", "--env", "gymnax/CartPole-v1", "--grid", "lr=1e-3,1e-2",
                                 "--total-steps", "20000", "--out", os.path.join("o", "ppo_hidden=32-32"),
                                 "--set", "hidden=32,32"]  # fmt: skip
    # A sweep over traced fields of one algorithm stays one program in this process.
    args, _ = cli._parser(None).parse_known_args(["sweep", "ppo", "--grid", "lr=1e-3,1e-2"])
    assert cli._static_groups(args, ["sweep", "ppo", "--grid", "lr=1e-3,1e-2"]) is None


@pytest.mark.parametrize("launcher, package", [("slurm", "submitit"), ("ray", "ray")])
def test_cluster_launchers_say_what_to_install(launcher, package, tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_package(name, *a, **k):
        if name == package:
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_package)
    assert cli.main(["sweep", "ppo", "--env", "gymnax/CartPole-v1", "--grid", "num_envs=2,4", "--launcher", launcher,
                     "--out", str(tmp_path / "x")]) == 2  # fmt: skip
    assert f"--launcher {launcher} needs {package}: pip install" in capsys.readouterr().err


def test_slurm_launcher_submits_one_job_per_group(tmp_path, monkeypatch):
    """With a stand-in for submitit: the executor gets the parameters, one command per group."""
    import sys
    import types

    submitted, params = [], {}

    class Job:
        def __init__(self, fn):
            self.fn, self.job_id = fn, str(len(submitted))

        def result(self):
            if "num_envs=4" in " ".join(self.fn.command):
                raise RuntimeError("boom")  # one failed job: the other still counts
            return ""

    class Executor:
        def __init__(self, folder):
            params["folder"] = folder

        def update_parameters(self, **kw):
            params.update(kw)

        def submit(self, fn):
            submitted.append(fn)
            return Job(fn)

    class CommandFunction:
        def __init__(self, command, cwd=None):
            self.command, self.cwd = command, cwd

    fake = types.SimpleNamespace(AutoExecutor=Executor, helpers=types.SimpleNamespace(CommandFunction=CommandFunction))
    monkeypatch.setitem(sys.modules, "submitit", fake)
    out = tmp_path / "s"
    code = cli.main(["sweep", "ppo", "--env", "gymnax/CartPole-v1", "--grid", "num_envs=2,4", "--launcher", "slurm",
                     "--launcher-kwargs", "timeout_min=30", "slurm_partition=gpu", "--out", str(out)])  # fmt: skip
    assert code == 1  # one group failed
    assert params == {"folder": str(out / "submitit"), "timeout_min": 30, "slurm_partition": "gpu"}
    assert [fn.command[3:6] for fn in submitted] == [["sweep", "ppo", "--env"]] * 2
    assert [fn.command[-1] for fn in submitted] == ["num_envs=2", "num_envs=4"]
    assert "--launcher" not in submitted[0].command and "timeout_min=30" not in submitted[0].command
    assert [g["returncode"] for g in json.load(open(out / "sweep.json"))["groups"]] == [0, 1]


_DEVICES = "import os, rlx; rlx.use_every_cpu_core(); import jax; print(len(jax.devices()), os.environ['JAX_CPU_ENABLE_ASYNC_DISPATCH'])"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity API on this platform")
def test_one_cpu_device_per_usable_core_and_a_set_count_is_kept():
    # Restricted to one core (as `taskset -c 0` does), the process gets one device, not
    # one per core of the machine; a device count already in XLA_FLAGS wins.
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_CPU_ENABLE_ASYNC_DISPATCH")}
    pinned = "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); " + _DEVICES
    one = subprocess.run([sys.executable, "-c", pinned], capture_output=True, text=True, env=env, check=True)
    assert one.stdout.split() == ["1", "false"]
    free = subprocess.run([sys.executable, "-c", _DEVICES], capture_output=True, text=True, env=env, check=True)
    assert free.stdout.split()[0] == str(len(os.sched_getaffinity(0)))
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=3"
    kept = subprocess.run([sys.executable, "-c", pinned], capture_output=True, text=True, env=env, check=True)
    assert kept.stdout.split()[0] == "3"


@pytest.mark.slow  # two processes, each compiling: about 40 s on 2 cores
def test_compile_cache_reruns_give_the_same_results(tmp_path):
    # A second process loads the compiled programs the first one stored, and must train
    # exactly as it did (the cache must not change results).
    cache = tmp_path / "xla"
    code = "import sys; from rlx import cli; raise SystemExit(cli.main(sys.argv[1:]))"
    metrics = []
    for run in ("a", "b"):
        out = str(tmp_path / run)
        args = ["train", "ppo", "--env", "gymnax/CartPole-v1", "--seeds", "2", "--out", out, "--no-progress",
                "--eval-episodes", "0", "--compile-cache", str(cache)] + TINY  # fmt: skip
        subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
        if run == "a":
            assert any(cache.iterdir()), "the first run stored no compiled program"
        metrics.append(read_metrics(os.path.join(out, "metrics.csv")))
    np.testing.assert_array_equal(metrics[0]["loss"], metrics[1]["loss"])
    np.testing.assert_array_equal(metrics[0]["episode_return"], metrics[1]["episode_return"])
