"""Bad command lines: each is refused before anything compiles, in one line on stderr
naming the flag, field or file, with no traceback and a non-zero exit code."""

import json
import os
import re

import pytest

from rlx import cli
from rlx.runfiles import RunLock

PPO = ["train", "ppo", "--env", "gymnax/CartPole-v1"]
SAC = ["train", "sac", "--env", "gymnax/Pendulum-v1"]
DQN = ["train", "dqn", "--env", "gymnax/CartPole-v1"]
SWEEP = ["sweep", "ppo", "--env", "gymnax/CartPole-v1"]
TINY = ["--num-envs", "4", "--num-steps", "16", "--total-steps", "384", "--num-minibatches", "2", "--update-epochs", "1"]

# (id, argv, regex); "{run}" is a finished-looking run directory, "{out}" a fresh one.
CASES = [
    # the command itself
    ("no-command", [], r"required: command"),
    ("unknown-command", ["trian"], r"invalid choice: 'trian'"),
    ("unknown-algo", ["train", "pppo", "--env", "gymnax/CartPole-v1"], r"unknown algorithm 'pppo'\. Did you mean ppo, moppo\?"),
    ("no-algo", ["train", "--env", "gymnax/CartPole-v1"], r"name an algorithm"),
    ("no-env", ["train", "ppo"], r"--env is required"),
    ("unknown-env", PPO[:2] + ["--env", "gymnax/CartPol-v1"], r"unknown environment 'gymnax/CartPol-v1'"),
    ("unknown-flag", PPO + ["--lrr", "1e-3"], r"unrecognized arguments: --lrr"),
    ("unknown-preset", PPO + ["--preset", "fast"], r"--preset 'fast' is invalid for ppo"),
    ("sac-on-discrete", ["train", "sac", "--env", "gymnax/CartPole-v1"], r"(?i)continuous|box|discrete"),
    ("dqn-on-continuous", ["train", "dqn", "--env", "gymnax/Pendulum-v1"], r"(?i)discrete"),
    # population and placement flags
    ("seeds-zero", PPO + ["--seeds", "0"], r"--seeds: '0' is invalid: it must be an integer >= 1"),
    ("seeds-negative", PPO + ["--seeds", "-2"], r"--seeds: '-2' is invalid"),
    ("seeds-word", PPO + ["--seeds", "two"], r"--seeds: 'two' is invalid"),
    ("devices-word", PPO + ["--devices", "two"], r"--devices: 'two' is invalid: it must be auto or a positive integer"),
    ("devices-zero", PPO + ["--devices", "0"], r"--devices: '0' is invalid"),
    ("devices-too-many", PPO + ["--devices", "16"], r"devices = 16 is invalid: it must be between 1 and 8"),
    ("devices-split", PPO + ["--seeds", "3", "--devices", "2"], r"population size 3 is not divisible by devices = 2"),
    ("chunks-zero", PPO + ["--chunks", "0"], r"--chunks: '0' is invalid"),
    ("chunks-float", PPO + ["--chunks", "2.5"], r"--chunks: '2\.5' is invalid"),
    ("population-mode", PPO + ["--population-mode", "pmap"], r"--population-mode: invalid choice: 'pmap'"),
    ("map-batch-zero", PPO + ["--map-batch-size", "0"], r"--map-batch-size: '0' is invalid"),
    ("map-batch-with-vmap", PPO + ["--map-batch-size", "2", "--population-mode", "vmap"], r"map_batch_size = 2 is invalid"),
    ("eval-episodes-negative", PPO + ["--eval-episodes", "-3"], r"--eval-episodes: '-3' is invalid: it must be an integer >= 0"),
    ("eval-every-negative", PPO + ["--eval-every", "-1"], r"--eval-every: '-1' is invalid"),
    ("eval-every-without-episodes", PPO + ["--eval-every", "2", "--eval-episodes", "0"], r"--eval-every needs --eval-episodes"),
    ("num-processes-zero", PPO + ["--num-processes", "0"], r"--num-processes: '0' is invalid"),
    ("process-id-negative", PPO + ["--process-id", "-1"], r"--process-id: '-1' is invalid"),
    ("init-timeout-word", PPO + ["--init-timeout", "soon"], r"--init-timeout: invalid float value: 'soon'"),
    # config fields as flags
    ("lr-negative", PPO + ["--lr", "-1"], r"PPOConfig\.lr = -1\.0 is invalid: it must be > 0"),
    ("lr-inf", PPO + ["--lr", "inf"], r"PPOConfig\.lr = inf is invalid"),
    ("lr-nan", PPO + ["--lr", "nan"], r"PPOConfig\.lr = nan is invalid"),
    ("lr-word", PPO + ["--lr", "fast"], r"PPOConfig\.lr: could not parse 'fast'"),
    ("gamma-above-one", PPO + ["--gamma", "1.5"], r"PPOConfig\.gamma = 1\.5 is invalid"),
    ("clip-zero", PPO + ["--clip-eps", "0"], r"PPOConfig\.clip_eps = 0\.0 is invalid"),
    ("num-envs-float", PPO + ["--num-envs", "4.5"], r"PPOConfig\.num_envs"),
    ("num-envs-zero", PPO + ["--num-envs", "0"], r"PPOConfig\.num_envs = 0 is invalid"),
    ("minibatches-indivisible", PPO + ["--num-minibatches", "3"], r"num_minibatches = 3 is invalid: it must divide"),
    ("epochs-zero", PPO + ["--update-epochs", "0"], r"PPOConfig\.update_epochs = 0 is invalid"),
    ("hidden-negative", PPO + ["--hidden", "-8"], r"PPOConfig\.hidden = \(-8,\) is invalid"),
    ("hidden-word", PPO + ["--hidden", "wide"], r"PPOConfig\.hidden: could not parse 'wide'"),
    ("bool-word", PPO + ["--anneal-lr", "maybe"], r"PPOConfig\.anneal_lr: could not parse 'maybe' as a boolean"),
    ("choice", PPO + ["--activation", "sigmoid"], r"PPOConfig\.activation = 'sigmoid' is invalid"),
    ("action-dist", PPO + ["--action-dist", "beta"], r"PPOConfig\.action_dist = 'beta' is invalid"),
    ("set-no-value", PPO + ["--set", "lr"], r"--set 'lr' must look like KEY=VALUE"),
    ("set-unknown-field", PPO + ["--set", "lrr=1e-3"], r"PPOConfig has no field 'lrr'\. Did you mean lr\?"),
    ("set-bad-value", PPO + ["--set", "lr=abc"], r"PPOConfig\.lr: could not parse 'abc'"),
    ("sac-buffer-huge", SAC + ["--buffer-size", "1000000000"], r"buffer_size.* GB"),
    ("sac-buffer-1e10", SAC + ["--buffer-size", "1e10"], r"SACConfig\.buffer_size = 10000000000 is invalid: it must be an integer of magnitude below 2\*\*31"),
    ("sac-batch-zero", SAC + ["--batch-size", "0"], r"SACConfig\.batch_size = 0 is invalid"),
    ("sac-tau", SAC + ["--tau", "2"], r"SACConfig\.tau = 2\.0 is invalid"),
    ("dqn-eps", DQN + ["--eps-end", "-0.1"], r"DQNConfig\.eps_end = -0\.1 is invalid"),
    ("dqn-hidden", DQN + ["--hidden", "0"], r"DQNConfig\.hidden = \(0,\) is invalid"),
    # environment arguments
    ("env-kwargs-no-value", PPO + ["--env-kwargs", "foo"], r"--env-kwargs 'foo' must look like KEY=VALUE"),
    ("env-kwargs-unknown", PPO + ["--env-kwargs", "foo=1"], r"gymnax/CartPole-v1 takes no argument 'foo'"),
    # sweeps
    ("grid-unknown-field", SWEEP + ["--grid", "lrr=1e-3,1e-2"], r"PPOConfig has no field 'lrr'"),
    ("grid-bad-value", SWEEP + ["--grid", "lr=1e-3,abc"], r"PPOConfig\.lr: could not parse 'abc'"),
    ("grid-bad-bound", SWEEP + ["--grid", "lr=1e-3,-1"], r"PPOConfig\.lr = -1\.0 is invalid"),
    ("grid-empty-value", SWEEP + ["--grid", "lr=1e-3,"], r"--grid 'lr=1e-3,' has an empty value"),
    ("grid-no-values", SWEEP + ["--grid", "lr"], r"--grid 'lr' must look like KEY=VALUE"),
    ("grid-static-bad", SWEEP + ["--grid", "num_envs=2,0"], r"num_envs = 0 is invalid: it must be >= 1"),
    ("sweep-algo-twice", ["sweep", "ppo,ppo", "--env", "gymnax/CartPole-v1"], r"names an algorithm twice"),
    ("sweep-other-algo-field", ["sweep", "ppo,dqn", "--env", "gymnax/CartPole-v1", "--grid", "clip_eps=0.1,0.2"], r"DQNConfig has no field 'clip_eps'"),
    ("launcher-unknown", SWEEP + ["--grid", "num_envs=2,4", "--launcher", "k8s"], r"--launcher: invalid choice: 'k8s'"),
    ("launcher-kwargs-local", SWEEP + ["--grid", "num_envs=2,4", "--launcher-kwargs", "a=1"], r"the local launcher takes no --launcher-kwargs"),
    # run directories
    ("existing-run", PPO + ["--out", "{run}"], r"already holds a run \(metrics\.csv, config\.json"),
    ("resume-missing", ["train", "--resume", "/nonexistent/run"], r"no config\.json there"),
    ("resume-corrupt-config", ["train", "--resume", "{corrupt}"], r"config\.json is corrupt"),
    ("resume-config-not-a-run", ["train", "--resume", "{notarun}"], r"config\.json is corrupt \(no 'algo' entry\)"),
    ("resume-changed-lr", ["train", "--resume", "{run}", "--lr", "1e-3"], r"change the stored run: lr=0\.001 \(stored: 0\.00025\)"),
    ("resume-changed-seeds", ["train", "--resume", "{run}", "--seeds", "4"], r"--seeds 4 \(stored: \[0, 1\]\)"),
    ("resume-changed-env", ["train", "--resume", "{run}", "--env", "gymnax/Acrobot-v1"], r"--env gymnax/Acrobot-v1 \(stored: gymnax/CartPole-v1\)"),
    ("resume-other-algo", ["train", "dqn", "--resume", "{run}"], r"algorithm dqn \(stored: ppo\)"),
    ("resume-with-out", ["train", "--resume", "{run}", "--out", "{out}"], r"--out \(a resumed run stays in its directory\)"),
    ("resume-changed-set", ["train", "--resume", "{run}", "--set", "clip_eps=0.3"], r"clip_eps=0\.3 \(stored: 0\.2\)"),
    ("resume-changed-chunks", ["train", "--resume", "{run}", "--chunks", "5"], r"--chunks 5 \(stored: 3\)"),
    ("resume-locked", ["train", "--resume", "{locked}"], r"is in use by PID \d+ on "),
    ("reproduce-unknown", ["reproduce", "no-such-experiment"], r"(?i)no-such-experiment"),
    ("reproduce-nothing", ["reproduce"], r"name an experiment"),
]


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    """A small finished PPO run, a copy held by a live lock, and broken run directories."""
    import shutil

    base = tmp_path_factory.mktemp("runs")
    run = str(base / "run")
    assert cli.main(PPO + ["--seeds", "2", "--chunks", "3", "--eval-episodes", "0", "--no-progress", "--out", run] + TINY) == 0
    locked = str(base / "locked")
    shutil.copytree(run, locked)
    corrupt = base / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text('{"algo": "ppo", "env": ')
    notarun = base / "notarun"
    notarun.mkdir()
    (notarun / "config.json").write_text(json.dumps([1, 2]))
    lock = RunLock(locked).acquire()
    yield dict(run=run, locked=locked, corrupt=str(corrupt), notarun=str(notarun), out=str(base / "fresh"))
    lock.release()


@pytest.mark.parametrize("argv, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_command_line_is_one_line_before_compiling(argv, message, run_dirs, tmp_path, capsys, monkeypatch):
    from tests.test_cli import refuse_to_compile

    argv = [a.format(**run_dirs) for a in argv]
    if argv[:1] in (["train"], ["sweep"]) and "--out" not in argv and "--resume" not in argv:
        argv += ["--out", str(tmp_path / "x")]
    before = {d: sorted(os.listdir(run_dirs[d])) for d in ("run", "locked")}
    capsys.readouterr()
    refuse_to_compile(monkeypatch)
    code = cli.main(argv + ["--no-progress"] * (argv[:1] in (["train"], ["sweep"])))
    out, err = capsys.readouterr()
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err + out
    assert re.search(message, err), err
    assert {d: sorted(os.listdir(run_dirs[d])) for d in ("run", "locked")} == before, "a refused command changed a run"


def test_the_table_is_large_enough():
    assert len(CASES) >= 60


def test_a_refused_out_leaves_the_existing_run_untouched(run_dirs, capsys):
    run = run_dirs["run"]
    before = {n: open(os.path.join(run, n), "rb").read() for n in ("config.json", "metrics.csv", "versions.json")}
    assert cli.main(PPO + ["--lr", "1e-3", "--out", run, "--no-progress"]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert {n: open(os.path.join(run, n), "rb").read() for n in before} == before


def test_a_broken_pipe_exits_quietly(tmp_path):
    import subprocess
    import sys

    code = "import sys; from rlx import cli; raise SystemExit(cli.main(['list']))"
    done = subprocess.run(f"{sys.executable} -c \"{code}\" | head -1", shell=True, capture_output=True, text=True)
    assert done.stdout.startswith("algorithms") and "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
