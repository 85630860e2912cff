"""The launchers of a static sweep's groups: submitit (its local executor standing in for
SLURM) and Ray (a cluster on 127.0.0.1 started here) give the local launcher's merged
metrics byte for byte; a failed group keeps the others' results; bad launcher input is
one line."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from rlx import cli, launchers
from tests.test_cli import refuse_to_compile

# submitit is imported here, at collection, not first inside a test: its import runs
# logging.config.dictConfig, which closes every existing handler, and absl's handler then
# closes its stream unless that is the current sys.stderr (inside a test, pytest's capture file).
try:
    import submitit  # noqa: F401
except ImportError:
    pass
HAVE = {name: importlib.util.find_spec(name) is not None for name in ("submitit", "ray")}


def needs(package):
    return pytest.mark.skipif(not HAVE[package], reason=f"{package} is not installed (pip install -e '.[launchers]')")


# Two groups (num_envs is static) of one seed and one or two updates each.
SWEEP = ["sweep", "ppo", "--env", "gymnax/CartPole-v1", "--seeds", "1", "--grid", "num_envs=2,4", "--chunks", "1",
         "--num-steps", "16", "--total-steps", "64", "--num-minibatches", "1", "--update-epochs", "1",
         "--eval-episodes", "0", "--no-progress"]  # fmt: skip
GROUPS = ["ppo_num_envs=2", "ppo_num_envs=4"]


@pytest.fixture(scope="module", autouse=True)
def ray_env():
    """Ray only on the loopback interface, in a short temp dir (its socket paths have a
    length limit), with no usage report and no auth token written to ~/.ray. Set before
    anything here imports ray; the processes Ray starts inherit it."""
    tmp = tempfile.mkdtemp(prefix="rlxray", dir="/tmp" if os.path.isdir("/tmp") else None)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
                     "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": tmp}.items():  # fmt: skip
            mp.setenv(k, v)
        mp.delenv("RAY_ADDRESS", raising=False)
        yield
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_cluster(ray_env):
    """A two-CPU Ray cluster owned by this process, stopped at the end even on failure; its address."""
    ray = pytest.importorskip("ray")
    try:
        # log_to_driver=False: workers' output would reach later tests' captured stderr.
        ctx = ray.init(num_cpus=2, include_dashboard=False, object_store_memory=10**8, log_to_driver=False)
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()


def sweep(out, *launcher_args) -> int:
    return cli.main(SWEEP + ["--out", str(out), *launcher_args])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sweep run by the local launcher: its merged metrics.csv."""
    out = tmp_path_factory.mktemp("local") / "sweep"
    assert sweep(out) == 0
    return (out / "metrics.csv").read_text()


def check_groups(out, codes=(0, 0)):
    groups = json.load(open(out / "sweep.json"))["groups"]
    assert [(g["label"], g["returncode"]) for g in groups] == list(zip(GROUPS, codes))


@pytest.mark.slow  # two group processes, each compiling its program: 40-65 s on 2 cores
def test_local_launcher_runs_every_group(reference):
    lines = reference.splitlines()
    assert lines[0].startswith("group,algo,num_envs,")
    # 64 steps per member: 2 updates of 2 envs x 16 steps, 1 of 4 x 16
    assert [line.split(",")[0] for line in lines[1:]] == ["ppo_num_envs=2"] * 2 + ["ppo_num_envs=4"]


@needs("submitit")
@pytest.mark.slow
def test_submitit_local_executor_equals_local(reference, tmp_path):
    out = tmp_path / "sweep"
    assert sweep(out, "--launcher", "slurm", "--launcher-kwargs", "cluster=local", "timeout_min=10") == 0
    check_groups(out)
    assert (out / "metrics.csv").read_text() == reference


@needs("ray")
@pytest.mark.slow
def test_ray_equals_local(reference, ray_cluster, tmp_path):
    """`rlx sweep --launcher ray` in its own process, joining the cluster through RAY_ADDRESS."""
    out = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "-m", "rlx.cli", *SWEEP, "--out", str(out), "--launcher", "ray"],
                          env=dict(os.environ, RAY_ADDRESS=ray_cluster), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    check_groups(out)
    assert (out / "metrics.csv").read_text() == reference


def test_a_failed_group_keeps_the_other_groups_results(tmp_path, capsys):
    """One group's directory already holds a run, so that group exits nonzero at once."""
    out = tmp_path / "sweep"
    (out / GROUPS[1]).mkdir(parents=True)
    (out / GROUPS[1] / "config.json").write_text("{}")
    capsys.readouterr()
    assert sweep(out) == 1
    assert f"failed groups: {GROUPS[1]}" in capsys.readouterr().err
    check_groups(out, (0, 1))
    header, *rows = (out / GROUPS[0] / "metrics.csv").read_text().splitlines(keepends=True)
    merged = "group,algo,num_envs," + header + "".join(f"{GROUPS[0]},ppo,2," + row for row in rows)
    assert len(rows) == 2 and (out / "metrics.csv").read_text() == merged


@pytest.mark.parametrize("name, kwargs, codes", [
    ("local", {}, [0, 3, 1, 0]),
    pytest.param("slurm", {"cluster": "local", "timeout_min": 5}, [0, 1, 1, 0], marks=needs("submitit")),  # no exit code kept
    pytest.param("ray", {}, [0, 3, 1, 0], marks=needs("ray")),
])  # fmt: skip
def test_each_launcher_keeps_the_others_results_when_a_command_fails(name, kwargs, codes, tmp_path, capfd, request):
    """A command that exits 3 and one that cannot start, between two that write a file."""
    if name == "ray":
        request.getfixturevalue("ray_cluster")  # joins this process's cluster: it stays up
    ok = [[sys.executable, "-c", f"open({str(tmp_path / f)!r}, 'w').write('done')"] for f in ("a", "b")]
    fails = [sys.executable, "-c", "import sys; print('error: no luck', file=sys.stderr); sys.exit(3)", "--out", "bad"]
    missing = [str(tmp_path / "no-such-python"), "--out", "missing"]
    assert launchers.LAUNCHERS[name]([ok[0], fails, missing, ok[1]], str(tmp_path), kwargs) == codes
    assert (tmp_path / "a").read_text() == (tmp_path / "b").read_text() == "done"
    err = capfd.readouterr().err
    assert "missing" in err
    if name == "slurm":
        assert "(bad) failed: error: no luck" in err  # the group's own error line, not a traceback


@needs("ray")
def test_ray_without_an_address_starts_and_stops_its_own_cluster(tmp_path):
    code = ("import sys, ray; from rlx.launchers import launch_ray; "
            "print(launch_ray([[sys.executable, '-c', 'import sys; sys.exit(4)'], [sys.executable, '-c', '']], '.', {}), "
            "ray.is_initialized())")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "[4, 0] False"
    assert "Started a local Ray instance" in done.stderr


@pytest.mark.parametrize("launcher, kwargs, message", [
    ("local", ["a=1"], r"the local launcher takes no --launcher-kwargs \(got a\)"),
    pytest.param("slurm", ["cluster=nowhere"], r"submitit rejects --launcher-kwargs: AutoExecutor doesn't know any executor named nowhere", marks=needs("submitit")),
    pytest.param("slurm", ["cluster=local", "queue=gpu"], r"submitit rejects --launcher-kwargs: Parameter 'queue' need to be prefixed", marks=needs("submitit")),
    pytest.param("slurm", ["cluster=local", "timeout_min=soon"], r"submitit rejects --launcher-kwargs: Parameter \"timeout_min\" expected type", marks=needs("submitit")),
    pytest.param("ray", ["num_cpu=1"], r"--launcher ray: bad --launcher-kwargs: Invalid option keyword num_cpu for remote functions", marks=needs("ray")),
    pytest.param("ray", ["num_cpus=-1"], r"--launcher ray: bad --launcher-kwargs: .*num_cpus cannot be negative", marks=needs("ray")),
])  # fmt: skip
def test_bad_launcher_kwargs_are_one_line_and_run_nothing(launcher, kwargs, message, tmp_path, capsys, monkeypatch):
    refuse_to_compile(monkeypatch)
    out = tmp_path / "sweep"
    assert sweep(out, "--launcher", launcher, "--launcher-kwargs", *kwargs) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and re.search(message, err), err
    assert not any((out / g).exists() for g in GROUPS)


def test_the_cli_offers_every_launcher():
    action = next(a for a in cli._parser(None).commands["sweep"]._actions if a.dest == "launcher")
    assert list(action.choices) == ["local", "slurm", "ray"] and action.choices is launchers.LAUNCHERS
