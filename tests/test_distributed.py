"""Multi-process runs on jax.distributed: two local processes with 2 fake CPU devices
each form one 4-device mesh, and `rlx sweep` over them gives exactly the result of one
process; settings are resolved and checked before anything connects; an unreachable
coordinator fails fast with a readable error instead of hanging."""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from rlx import cli
from rlx import distributed as D
from rlx.checkpoint import Checkpointer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--num-envs", "4", "--num-steps", "16", "--total-steps", "256", "--num-minibatches", "1",
        "--update-epochs", "1"]  # fmt: skip
SWEEP = ["sweep", "ppo", "--env", "gymnax/CartPole-v1", "--seeds", "2", "--grid", "lr=1e-3,3e-3", "--chunks", "2",
         "--no-progress", "--eval-episodes", "2"] + TINY  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RLX_", "SLURM_", "OMPI_", "TPU_"))}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


# -- settings ---------------------------------------------------------------------------
def test_settings_come_from_arguments_then_environment_then_the_cluster():
    env = {D.ENV_COORDINATOR: "10.0.0.1:1234", D.ENV_NUM_PROCESSES: "4", D.ENV_PROCESS_ID: "3"}
    assert D.resolve(environ=env) == (
        "environment", dict(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3))
    assert D.resolve("h:1", 2, 0, environ=env)[1] == dict(coordinator_address="h:1", num_processes=2, process_id=0)
    assert D.resolve(environ={}) == ("single", {})
    slurm = dict(SLURM_JOB_ID="7", SLURM_STEP_NODELIST="n[1-2]", SLURM_NTASKS="2", SLURM_PROCID="1", SLURM_LOCALID="0")
    assert D.resolve(environ=slurm) == ("slurm", {})  # jax's own SLURM detection fills in the rest
    assert D.detect_cluster({**slurm, "SLURM_NTASKS": "1"}) is None  # a one-task job is one process
    assert D.detect_cluster({"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3"}) == "tpu"
    assert D.detect_cluster({"TPU_WORKER_HOSTNAMES": "localhost"}) is None
    assert D.detect_cluster({"OMPI_COMM_WORLD_SIZE": "8"}) == "mpi"


@pytest.mark.parametrize(
    "args, message",
    [
        (("127.0.0.1:99999", 2, 0), r"coordinator = '127.0.0.1:99999' is invalid: it must look like HOST:PORT"),
        (("nohost", 2, 0), r"must look like HOST:PORT"),
        (("h:1", 0, 0), r"num_processes = 0 is invalid: it must be an integer >= 1"),
        (("h:1", 2, 2), r"process_id = 2 is invalid: it must be an integer in 0\.\.1"),
        (("h:1", None, None), r"missing: --num-processes \(or RLX_NUM_PROCESSES\), --process-id"),
    ],
)
def test_bad_settings_name_the_setting(args, message):
    with pytest.raises(D.DistributedSetupError, match=message):
        D.resolve(*args, environ={})


def test_single_process_needs_no_setup(monkeypatch):
    for var in list(os.environ):
        if var.startswith(("RLX_", "SLURM_", "OMPI_", "TPU_", "MEGASCALE_")):
            monkeypatch.delenv(var)
    monkeypatch.setattr(D, "_tpu_vm_processes", lambda: 1)
    setup = D.initialize()
    assert setup.process_count == 1 and setup.global_devices == 8 and D.is_main()
    key = jax.random.key(0)
    assert np.array_equal(jax.random.key_data(D.process_key(key)), jax.random.key_data(jax.random.fold_in(key, 0)))


# -- unreachable coordinator ---------------------------------------------------------------
def test_an_unreachable_coordinator_fails_fast_with_a_clear_error():
    cmd = [sys.executable, "-m", "rlx.cli"] + SWEEP + [
        "--out", "/nonexistent", "--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2",
        "--process-id", "1", "--init-timeout", "2"]  # fmt: skip
    start = time.perf_counter()
    out = subprocess.run(cmd, env=_env(2), capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "could not reach the coordinator at 127.0.0.1:" in out.stderr and "within 2 s" in out.stderr
    assert time.perf_counter() - start < 30


def test_missing_peers_end_the_coordinator_with_a_clear_error_instead_of_hanging():
    code = (f"from rlx import distributed; distributed.initialize('127.0.0.1:{_free_port()}', 2, 0, timeout_s=2)")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=_env(1), capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out.stderr[-2000:]
    assert "the run did not assemble within 2 s: not all 2 processes joined" in out.stderr
    assert time.perf_counter() - start < 30


# -- two processes, one mesh ---------------------------------------------------------------
def _two_process_sweep(out: str) -> tuple[list[int], list[str]]:
    port = _free_port()
    procs = [
        subprocess.Popen([sys.executable, "-m", "rlx.cli"] + SWEEP + [
            "--out", out, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
            env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        for i in (0, 1)
    ]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    return [p.returncode for p in procs], logs


def test_two_processes_give_exactly_the_single_process_result(tmp_path):
    """`rlx sweep` as 2 processes x 2 fake CPU devices equals the same sweep in this
    process: metrics.csv byte for byte, evaluation, and the final checkpoint (written
    by both processes together) bit for bit, keys included."""
    multi, single = str(tmp_path / "multi"), str(tmp_path / "single")
    port = _free_port()
    codes, logs = _two_process_sweep(multi)
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    assert "on 4 device(s)" in logs[0] and "rlx:" not in logs[1], "only process 0 reports"

    assert cli.main(SWEEP + ["--out", single, "--devices", "4"]) == 0
    with open(os.path.join(multi, "metrics.csv")) as a, open(os.path.join(single, "metrics.csv")) as b:
        assert a.read() == b.read()
    eval_multi = json.load(open(os.path.join(multi, "summary.json")))["eval_return"]
    assert eval_multi == json.load(open(os.path.join(single, "summary.json")))["eval_return"]

    from rlx.train import Runner  # restore both final checkpoints into one template state
    from rlx import envs
    from rlx.agents import ppo
    from rlx.population import make_population, shard

    env, params = envs.make("gymnax/CartPole-v1")
    cfg = ppo.PPOConfig(num_envs=4, num_steps=16, total_steps=256, num_minibatches=1, update_epochs=1)
    pop = make_population(cfg, seeds=2, grid={"lr": [1e-3, 3e-3]})
    runner = Runner(ppo.make_agent(env, cfg), pop, params, None, devices=4, progress=False)
    like = jax.eval_shape(runner._init_fn(), shard(pop.keys, runner.mesh), shard(pop.cfg, runner.mesh), params)
    states = []
    for d in (multi, single):
        ckpt = Checkpointer(os.path.join(d, "checkpoints"))
        state, meta = ckpt.restore(like)
        ckpt.close()
        assert meta["updates"] == 4
        states.append(state)
    leaves = [jax.tree.leaves(s) for s in states]
    assert len(leaves[0]) == len(leaves[1]) > 5
    for a, b in zip(*leaves):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # Process 0 refuses a fresh run over this one; process 1 hears of it at once instead
    # of waiting on a collective until it times out, and nothing in the run changes.
    before = open(os.path.join(multi, "metrics.csv")).read()
    start = time.perf_counter()
    codes, logs = _two_process_sweep(multi)
    assert codes == [1, 1] and time.perf_counter() - start < 25, "\n\n".join(logs)
    # (Gloo's own connection lines share stderr and may interleave with ours.)
    assert "already holds a run" in logs[0] and "Traceback" not in logs[0], logs[0]
    assert "error: process 0 refused the run; its log says why." in logs[1] and "Traceback" not in logs[1], logs[1]
    assert open(os.path.join(multi, "metrics.csv")).read() == before


def test_a_population_must_divide_the_global_devices(monkeypatch):
    """In a run over processes every device must hold members (as if 2 processes x 4)."""
    from rlx import population as pop_lib

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "local_device_count", lambda: 4)
    assert pop_lib.default_devices(3) == 8
    with pytest.raises(ValueError, match=r"population size 3 on devices = 8 is invalid in a run over 2 processes: "
                                         r"the population is spread over all 8 global devices \(4 per process\), "
                                         r"so it must be a multiple of 8"):  # fmt: skip
        pop_lib.check_devices(3, 8)
    with pytest.raises(ValueError, match=r"devices = 4 is invalid in a run over 2 processes"):
        pop_lib.check_devices(8, 4)
    pop_lib.check_devices(16, 8)
