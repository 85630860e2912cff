"""Fault injection for the host loop: a run killed at any point of the chunk loop or of
resume, given corrupt checkpoints, a full disk or a second process, loses nothing and
finishes identical to an uninterrupted run.

Each run is a real `rlx train` process. Kills come from named injection points
(`rlx.faults`, armed through RLX_FAULT), not from timing. The processes share a
persistent compile cache, so only the first one compiles.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from rlx.checkpoint import read_state_arrays

CODE = "import sys; from rlx import cli; raise SystemExit(cli.main(sys.argv[1:]))"
# 8 updates of 2 seeds in 4 chunks: checkpoints at updates 2, 4, 6, 8 (the newest 2 kept).
TINY = ["--num-envs", "4", "--num-steps", "16", "--total-steps", "512", "--num-minibatches", "2", "--update-epochs", "1"]
KILLED = -9


def train_args(out, *extra):
    return ["train", "ppo", "--env", "gymnax/CartPole-v1", "--seeds", "2", "--chunks", "4", "--eval-episodes", "2",
            "--eval-every", "2", "--no-progress", "--out", str(out), *TINY, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def rlx(tmp_path_factory):
    """`rlx(args, fault=None, devices=2, **env)`: run the command line in a fresh process."""
    cache = str(tmp_path_factory.mktemp("xla-cache"))

    def run(args, fault=None, devices=2, **env):
        full = {k: v for k, v in os.environ.items() if k not in ("RLX_FAULT", "RLX_FAULT_FILE")}
        full["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        # Quiet the compile cache's spurious machine-feature lines, so stderr holds only rlx's.
        full["TF_CPP_MIN_LOG_LEVEL"] = "3"
        full.update(env)
        if fault:
            full["RLX_FAULT"] = fault
        cmd = [sys.executable, "-c", CODE, *args, "--compile-cache", cache]
        return subprocess.run(cmd, capture_output=True, text=True, env=full, timeout=300)

    return run


@pytest.fixture(scope="module")
def reference(rlx, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    done = rlx(train_args(out))
    assert done.returncode == 0, done.stderr
    return out


def steps(out):
    return sorted(int(n) for n in os.listdir(out / "checkpoints") if n.isdigit())


def summary(out):
    data = json.load(open(out / "summary.json"))
    data.pop("timings")
    return data


def assert_same_run(out, reference):
    assert (out / "metrics.csv").read_bytes() == (reference / "metrics.csv").read_bytes()
    assert summary(out) == summary(reference)
    assert steps(out) == steps(reference) == [6, 8]
    got, want = read_state_arrays(str(out / "checkpoints" / "8")), read_state_arrays(str(reference / "checkpoints" / "8"))
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert (out / "learning_curve.png").stat().st_size > 0
    assert not [n for n in os.listdir(out) if n.startswith(".rlx-tmp-")]


def resume(rlx, out, **kw):
    done = rlx(["train", "--resume", str(out), "--no-progress"], **kw)
    assert done.returncode == 0, done.stderr
    return done


# Kill points of the chunk loop: (RLX_FAULT, how to continue: "resume" or "rerun" the first command).
KILLS = [
    pytest.param("runner.locked", "rerun", marks=pytest.mark.slow),  # lock taken, nothing written
    ("atomic.written", "rerun"),  # config.json's temp file complete, not renamed
    ("chunk.done@2", "resume"),  # a chunk computed, nothing of it written
    ("csv.append.torn@2", "resume"),  # half of a chunk's rows in metrics.csv
    ("csv.appended@3", "resume"),  # rows written, checkpoint not saved
    ("checkpoint.committed@2", "resume"),  # orbax committed, manifest not written
    ("checkpoint.verified@3", "resume"),  # manifest written, the old checkpoint not yet removed
    ("checkpoint.cleaned@4", "resume"),  # the last checkpoint saved; summary not written
    ("run.finished", "resume"),  # the loop ended, before the final evaluation and summary
]


@pytest.mark.parametrize("fault, then", KILLS, ids=[(k.values if hasattr(k, "values") else k)[0] for k in KILLS])
def test_a_kill_in_the_chunk_loop_loses_nothing(fault, then, rlx, reference, tmp_path):
    out = tmp_path / "run"
    killed = rlx(train_args(out), fault=fault)
    assert killed.returncode == KILLED, killed.stderr
    if then == "rerun":
        done = rlx(train_args(out))
        assert done.returncode == 0, done.stderr
    else:
        resume(rlx, out)
    assert_same_run(out, reference)


# Kills during resume itself: a first kill leaves something to resume, then the resume is killed.
RESUME_KILLS = [
    pytest.param("chunk.done@3", "resume.restored", marks=pytest.mark.slow),  # state restored, metrics.csv not cut back
    ("csv.appended@3", "csv.truncate.written"),  # inside the rewrite of metrics.csv, before its rename
    pytest.param("csv.append.torn@3", "atomic.written", marks=pytest.mark.slow),  # the cut-back copy, before its rename
    pytest.param("checkpoint.committed@3", "checkpoint.committed", marks=pytest.mark.slow),  # first save, unverified
]


@pytest.mark.parametrize("first, second", RESUME_KILLS, ids=[(k.values if hasattr(k, "values") else k)[1] for k in RESUME_KILLS])
def test_a_kill_during_resume_loses_nothing(first, second, rlx, reference, tmp_path):
    out = tmp_path / "run"
    assert rlx(train_args(out), fault=first).returncode == KILLED
    killed = rlx(["train", "--resume", str(out), "--no-progress"], fault=second)
    assert killed.returncode == KILLED, killed.stderr
    resume(rlx, out)
    assert_same_run(out, reference)


# -- corrupt checkpoints ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def partial(rlx, tmp_path_factory):
    """A run killed after chunk 4's rows, before its checkpoint: checkpoints at 4 and 6."""
    out = tmp_path_factory.mktemp("partial") / "run"
    assert rlx(train_args(out), fault="csv.appended@4").returncode == KILLED
    assert steps(out) == [4, 6]
    return out


def largest_file(directory):
    files = [os.path.join(r, n) for r, _, ns in os.walk(directory) for n in ns]
    return max(files, key=os.path.getsize)


def flip_bit(path):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x10
    open(path, "wb").write(bytes(data))


# The default suite flips a bit; the other kinds of damage run with `-m slow`.
CORRUPTIONS = {
    "bit_flip": flip_bit,
    "truncated": lambda p: os.truncate(p, os.path.getsize(p) // 2),
    "zeroed": lambda p: open(p, "wb").write(b"\0" * os.path.getsize(p)),
    "deleted": os.unlink,
}


@pytest.mark.parametrize("corruption", [c if c == "bit_flip" else pytest.param(c, marks=pytest.mark.slow) for c in CORRUPTIONS])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(corruption, rlx, partial, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(partial, out)
    CORRUPTIONS[corruption](largest_file(out / "checkpoints" / "6" / "state"))
    done = resume(rlx, out)
    lines = [line for line in done.stderr.splitlines() if "unusable" in line]
    assert len(lines) == 1 and "checkpoint at update 6" in lines[0] and "continuing from update 4" in lines[0], done.stderr
    assert_same_run(out, reference)


@pytest.mark.slow
def test_a_checkpoint_whose_state_disagrees_with_its_count_is_passed_over(rlx, partial, reference, tmp_path):
    # Step 6 replaced by step 4's files under a manifest that matches them: the checksums
    # pass, the state's own update counter (4) does not.
    from rlx.checkpoint import MANIFEST, _files

    out = tmp_path / "run"
    shutil.copytree(partial, out)
    six = out / "checkpoints" / "6"
    shutil.rmtree(six)
    shutil.copytree(out / "checkpoints" / "4", six)
    (six / "meta" / "metadata").write_text(json.dumps({"updates": 6}))
    (six / MANIFEST).write_text(json.dumps({"step": 6, "meta": {"updates": 6}, "files": _files(str(six))}))
    done = resume(rlx, out)
    assert "checkpoint at update 6 is unusable (its state counts [4] updates, not 6)" in done.stderr, done.stderr
    assert_same_run(out, reference)


@pytest.mark.parametrize("name, damage, message", [
    ("config.json", lambda p: p.write_text('{"algo": "ppo", "env"'), r"config\.json is corrupt"),
    ("metrics.csv", lambda p: p.write_text("garbage\n" + p.read_text()), r"metrics\.csv has no valid header"),
    ("metrics.csv", lambda p: p.write_text("".join(p.read_text().splitlines(True)[:4])), r"metrics\.csv has 3 of the 12 rows up to update 6"),
    ("metrics.csv", os.unlink, r"metrics\.csv is missing"),
])  # fmt: skip
@pytest.mark.slow
def test_a_corrupt_run_file_gives_one_line(name, damage, message, rlx, partial, tmp_path):
    import re

    out = tmp_path / "run"
    shutil.copytree(partial, out)
    damage(out / name)
    done = rlx(["train", "--resume", str(out), "--no-progress"])
    assert done.returncode == 1
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and re.search(message, err[0]), done.stderr


# -- a full disk -------------------------------------------------------------------------------
def test_a_full_disk_loses_nothing_and_resumes(rlx, reference, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    size = sum(os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(reference) for n in ns)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={2 * size + (1 << 20)}", "tmpfs", str(disk)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        # Leave room for most of the run's files, not all.
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "ballast").write_bytes(b"\0" * int(free - 0.8 * size))
        out = disk / "run"
        full = rlx(train_args(out))
        err = full.stderr.strip().splitlines()
        assert full.returncode == 1 and len(err) == 1, full.stderr
        assert err[0].startswith("error: disk full") and f"rlx train --resume {out}" in err[0], err
        (disk / "ballast").unlink()
        if (out / "config.json").exists():
            resume(rlx, out)
        else:  # the disk filled before the run's first file: start it again
            assert rlx(train_args(out)).returncode == 0
        assert_same_run(out, reference)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# -- two processes on one run ------------------------------------------------------------------
def test_a_second_process_on_a_live_run_is_refused(rlx, reference, tmp_path):
    out, release = tmp_path / "run", tmp_path / "release"
    env = {k: v for k, v in os.environ.items()}
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=2", RLX_FAULT="chunk.done@2:wait", TF_CPP_MIN_LOG_LEVEL="3",
               RLX_FAULT_FILE=str(release))  # fmt: skip
    cache = os.path.join(tmp_path, "cache")
    live = subprocess.Popen([sys.executable, "-c", CODE, *train_args(out), "--compile-cache", cache], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.time() + 240
        while not os.path.exists(str(release) + ".waiting"):
            assert live.poll() is None and time.time() < deadline, live.communicate()
            time.sleep(0.1)
        for args in (["train", "--resume", str(out), "--no-progress"], train_args(out)):
            second = rlx(args)
            err = second.stderr.strip().splitlines()
            assert second.returncode == 1 and len(err) == 1, second.stderr
            assert f"is in use by PID {live.pid}" in err[0], err
        release.touch()
        assert live.wait(timeout=240) == 0, live.communicate()
    finally:
        if live.poll() is None:
            live.kill()
    assert_same_run(out, reference)


# -- a run resumed on another number of devices ---------------------------------------------------
@pytest.fixture(scope="module")
def map_reference(rlx, tmp_path_factory):
    out = tmp_path_factory.mktemp("map-reference") / "run"
    done = rlx(train_args(out, "--population-mode", "map"))
    assert done.returncode == 0, done.stderr
    return out


# In map mode every member runs its solo program, so the device count cannot change a bit;
# in vmap mode (the default) it changes the members batched per device, and with them XLA's
# rounding in the last bits.
@pytest.mark.slow
@pytest.mark.parametrize("start, then", [(2, 1), (1, 2)])
def test_a_map_run_resumes_on_another_device_count(start, then, rlx, map_reference, tmp_path):
    out = tmp_path / "run"
    args = train_args(out, "--devices", str(start), "--population-mode", "map")
    assert rlx(args, fault="csv.appended@3", devices=start).returncode == KILLED
    done = rlx(["train", "--resume", str(out), "--no-progress", "--devices", "auto"], devices=then)
    assert done.returncode == 0, done.stderr
    assert f"on {then} device(s)" in done.stdout
    assert_same_run(out, map_reference)


def test_a_run_started_as_auto_when_auto_meant_map_resumes_as_map(rlx, map_reference, tmp_path):
    """A run whose config.json says population_mode "auto" with the Runner's resolved "map"
    (auto's meaning on CPU before it meant vmap) resumes in map mode, not refused, bitwise."""
    out = tmp_path / "run"
    assert rlx(train_args(out, "--population-mode", "map"), fault="csv.appended@3").returncode == KILLED
    config = json.load(open(out / "config.json"))
    assert config["runner"]["population_mode"] == "map"
    config["population_mode"] = "auto"  # as the CLI stored a default run then
    (out / "config.json").write_text(json.dumps(config))
    done = rlx(["train", "--resume", str(out), "--no-progress"])
    assert done.returncode == 0, done.stderr
    assert json.load(open(out / "config.json"))["runner"]["population_mode"] == "map"
    assert_same_run(out, map_reference)


@pytest.mark.slow
def test_a_population_that_cannot_be_split_is_refused_in_one_line(rlx, tmp_path):
    out = tmp_path / "run"
    args = train_args(out, "--devices", "1")
    args[args.index("--seeds") + 1] = "3"
    assert rlx(args, fault="csv.appended@2", devices=1).returncode == KILLED
    done = rlx(["train", "--resume", str(out), "--no-progress", "--devices", "2"], devices=2)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(err) == 1 and "population size 3 is not divisible by devices = 2" in err[0]


# -- Ctrl-C -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_ctrl_c_stops_at_the_chunk_boundary_with_everything_saved(rlx, reference, tmp_path):
    import signal

    out, release = tmp_path / "run", tmp_path / "release"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", TF_CPP_MIN_LOG_LEVEL="3",
               RLX_FAULT="chunk.done@3:wait", RLX_FAULT_FILE=str(release))  # fmt: skip
    live = subprocess.Popen([sys.executable, "-c", CODE, *train_args(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.time() + 240
        while not os.path.exists(str(release) + ".waiting"):
            assert live.poll() is None and time.time() < deadline, live.communicate()
            time.sleep(0.1)
        live.send_signal(signal.SIGINT)  # during chunk 3: it finishes, is saved, and the run stops
        time.sleep(0.5)
        release.touch()
        _, err = live.communicate(timeout=240)
    finally:
        if live.poll() is None:
            live.kill()
    assert live.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last == f"error: interrupted at update 6; resume with `rlx train --resume {out}`", err
    assert "Traceback" not in err and steps(out)[-1] == 6
    resume(rlx, out)
    assert_same_run(out, reference)
