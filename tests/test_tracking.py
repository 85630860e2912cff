"""rlx.tracking: each tracker's logged values read back through the tool's own files or client."""

import glob
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from rlx import tracking

MEMBERS = [{"member": 0, "seed": 0}, {"member": 1, "seed": 3}]


def fake_chunk(updates_done: int, k: int = 3) -> dict[str, np.ndarray]:
    """A chunk of k updates for 2 members: member m, update u has episode_return 10 m + u
    (NaN at update 1: no episode finished), loss -u, and a 2-vector mo_return (u, 2u)."""
    updates = np.arange(updates_done - k, updates_done, dtype=float)
    episode_return = np.stack([updates, 10 + updates]).astype(np.float32)  # [P=2, k]
    episode_return[:, updates == 1] = np.nan
    loss = -np.stack([updates, updates])
    mo_return = np.stack([np.stack([updates, 2 * updates], -1)] * 2)  # [2, k, 2]
    return {"episode_return": episode_return, "loss": loss, "mo_return": mo_return}


def expected(member: int, names=("episode_return", "loss", "mo_return/0", "mo_return/1"), updates=range(6)):
    """{name: {update: value}} that the two fake chunks (updates 0..5) should leave for `member`."""
    out = {}
    for u in updates:
        values = {"episode_return": 10 * member + u, "loss": -u, "mo_return/0": u, "mo_return/1": 2 * u}
        for name in names:
            if not (name == "episode_return" and u == 1):
                out.setdefault(name, {})[u] = float(values[name])
    return out


def log_two_chunks(tracker) -> None:
    tracker(3, fake_chunk(3))
    tracker(6, fake_chunk(6))
    tracker.close()


# -- readers of each tool's files --------------------------------------------------------------------
def read_tensorboard(run_dir: str) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} from the event files in `run_dir` (TFRecord: length, its crc,
    the Event proto, its crc)."""
    from tensorboardX.proto import event_pb2

    out: dict[str, dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, {})[event.step] = value.simple_value
    return out


def read_wandb_records(path: str) -> list:
    """The records of an offline W&B run file: a LevelDB-style log (a 7-byte header, then
    32 KiB blocks of records, each with a 7-byte header: crc, length, kind)."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    block, pos, records, pending = 32768, 7, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # the rest of a block too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if pos + 7 + length > len(data):  # a record still being written
            break
        if length == 0 and kind == 0:
            pos += block - pos % block
            continue
        payload, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:  # full
            records.append(payload)
        elif kind == 2:  # first
            pending = payload
        elif kind == 3:  # middle
            pending += payload
        elif kind == 4:  # last
            records.append(pending + payload)
    parsed = []
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        parsed.append(record)
    return parsed


# -- TensorBoard -----------------------------------------------------------------------------------
def test_tensorboard_logs_every_metric_of_every_member_at_its_update(tmp_path):
    log_dir = str(tmp_path / "tb")
    tracker = tracking.TensorBoardTracker(log_dir, MEMBERS)
    assert not os.path.exists(log_dir)  # nothing on disk until the first chunk
    log_two_chunks(tracker)
    assert sorted(os.listdir(log_dir)) == ["seed=0", "seed=3"]
    for member, label in enumerate(["seed=0", "seed=3"]):
        logged = read_tensorboard(os.path.join(log_dir, label))
        want = expected(member)
        assert sorted(logged) == sorted(want)
        for name in want:
            assert sorted(logged[name]) == sorted(want[name]), name  # the NaN update is left out
            np.testing.assert_allclose([logged[name][u] for u in want[name]], list(want[name].values()), rtol=1e-6)


def test_member_labels_tell_members_apart():
    assert tracking.member_labels([{"member": 0, "lr": np.float32(0.5), "seed": 1}]) == ["lr=0.5,seed=1"]
    assert tracking.member_labels([{"member": 0}, {"member": 1}]) == ["member=0", "member=1"]
    assert tracking.member_labels([{"member": 0, "seed": 1}, {"member": 1, "seed": 1}]) == [
        "member=0,seed=1", "member=1,seed=1"]  # fmt: skip


# -- Weights & Biases ------------------------------------------------------------------------------
def wandb_history(out_dir: str) -> tuple[dict[str, dict[int, float]], dict, dict]:
    """`(history {key: {step: value}}, config, summary)` of the one offline W&B run in `out_dir`."""
    (run_file,) = glob.glob(os.path.join(out_dir, "wandb", "offline-run-*", "run-*.wandb"))
    # finish() can return before wandb-core (a separate process) has written the records;
    # the run's exit record comes last.
    deadline = time.monotonic() + 20
    while (records := read_wandb_records(run_file))[-1:] == [] or records[-1].WhichOneof("record_type") != "exit":
        assert time.monotonic() < deadline, f"{run_file} has no exit record after 20 s"
        time.sleep(0.1)
    history: dict[str, dict[int, float]] = {}
    config: dict = {}
    summary: dict = {}
    for r in records:
        kind = r.WhichOneof("record_type")
        if kind == "history":
            # wandb-core writes the key in `nested_key` (a one-element path) rather than `key`
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for key, value in items.items():
                if not key.startswith("_"):
                    history.setdefault(key, {})[r.history.step.num] = value
        elif kind in ("run", "config"):
            updates = r.run.config.update if kind == "run" else r.config.update
            config.update({u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in updates})
        elif kind == "summary":
            summary.update({u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in r.summary.update})
    return history, config, summary


def test_wandb_offline_run_holds_each_members_metrics_at_its_update(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):  # keep ~/.config and ~/.cache clean
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    tracker = tracking.WandbTracker("rlx-test", MEMBERS, config={"lr": 0.001}, mode="offline", dir=str(tmp_path))
    log_two_chunks(tracker)
    logged, config, _ = wandb_history(str(tmp_path))
    want = {f"{label}/{name}": values for member, label in enumerate(["seed=0", "seed=3"])
            for name, values in expected(member).items()}  # fmt: skip
    assert logged == want  # small integers: exact through float32 and JSON
    assert config["lr"] == 0.001 and config["members"] == MEMBERS


# -- MLflow ----------------------------------------------------------------------------------------
def mlflow_runs(uri: str, experiment: str) -> dict[str, object]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return {r.data.tags["rlx.member_label"]: r for r in client.search_runs([exp.experiment_id])}


def test_mlflow_file_store_holds_a_run_per_member(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for this opt-in
    uri = f"file:{tmp_path / 'mlruns'}"
    tracker = tracking.MLflowTracker(uri, "rlx-test", MEMBERS, config={"agent": {"lr": 0.001}}, run_name="run1")
    log_two_chunks(tracker)
    runs = mlflow_runs(uri, "rlx-test")
    assert sorted(runs) == ["seed=0", "seed=3"]
    client = MlflowClient(tracking_uri=uri)
    for member, label in enumerate(["seed=0", "seed=3"]):
        run = runs[label]
        assert run.info.status == "FINISHED" and run.info.run_name == f"run1/{label}"
        assert run.data.params == {"agent.lr": "0.001", "member": str(member), "seed": str(MEMBERS[member]["seed"])}
        for name, want in expected(member).items():
            history = client.get_metric_history(run.info.run_id, name)
            assert {m.step: m.value for m in history} == pytest.approx(want), (label, name)


def test_make_tracker_mlflow_defaults_to_a_sqlite_store_in_the_run_dir(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    out_dir = tmp_path / "run7"
    tracker = tracking.make_tracker("mlflow", str(out_dir), MEMBERS[:1], {"env": "gymnax/CartPole-v1"})
    with tracker:
        tracker(3, {name: v[:1] for name, v in fake_chunk(3).items()})
    assert (out_dir / "mlflow.db").exists()
    (run,) = mlflow_runs(f"sqlite:///{out_dir / 'mlflow.db'}", "rlx").values()
    assert run.info.run_name == "run7/seed=0" and run.data.params["env"] == "gymnax/CartPole-v1"
    assert run.data.metrics["loss"] == -2.0  # the latest value


# -- make_tracker ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, module, package", [
    ("tensorboard", "tensorboardX", "tensorboardX"), ("wandb", "wandb", "wandb"), ("mlflow", "mlflow", "mlflow-skinny"),
])  # fmt: skip
def test_make_tracker_names_the_missing_extra(tmp_path, monkeypatch, name, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # import of `module` now raises ImportError
    with pytest.raises(tracking.TrackerMissingError) as err:
        tracking.make_tracker(name, str(tmp_path), MEMBERS, {})
    assert str(err.value) == f"{package} is not installed: pip install 'rlx[tracking]'"
    assert isinstance(err.value, ImportError)


def test_make_tracker_refuses_an_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="tensorboard, wandb, mlflow"):
        tracking.make_tracker("neptune", str(tmp_path), MEMBERS, {})


def test_importing_rlx_tracking_imports_no_tracker_package():
    code = "import sys, rlx.tracking; print([m for m in ('tensorboardX', 'wandb', 'mlflow') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- end to end ------------------------------------------------------------------------------------
def test_rlx_train_log_sends_every_metric_of_a_2_seed_sweep_to_each_tracker(tmp_path, monkeypatch):
    """`rlx train --log tensorboard,wandb,mlflow`: each tool holds every metric of metrics.csv
    for each member at its update, the final evaluation, the config with versions, and the
    learning-curve image."""
    pytest.importorskip("tensorboardX")
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from rlx import cli
    from rlx.logging import read_metrics

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    out = str(tmp_path / "run")
    tiny = ["--num-envs", "4", "--num-steps", "16", "--total-steps", "384", "--num-minibatches", "2", "--update-epochs", "1"]
    args = ["train", "ppo", "--env", "gymnax/CartPole-v1", "--seeds", "2", "--out", out, "--chunks", "3",
            "--no-progress", "--eval-episodes", "2", "--log", "tensorboard,wandb,mlflow"] + tiny  # fmt: skip
    assert cli.main(args) == 0
    assert set(os.listdir(tmp_path)) <= {"run", "wandb_config_dir", "wandb_cache_dir", "wandb_data_dir"}
    csv = read_metrics(os.path.join(out, "metrics.csv"))
    summary = json.load(open(os.path.join(out, "summary.json")))
    names = [n for n in csv if n not in ("member", "seed", "update_index")]
    want = {}  # {(seed, name): {update: value}}
    for seed in (0, 1):
        rows = csv["seed"] == seed
        for name in names:
            want[seed, name] = {int(u): float(v) for u, v in zip(csv["update_index"][rows], csv[name][rows]) if np.isfinite(v)}
    assert sum(len(v) for v in want.values()) > 2 * len(names)
    last = 6 - 1

    # TensorBoard: a run per member, the final evaluation, the image and the config in the population's run
    for seed in (0, 1):
        logged = read_tensorboard(os.path.join(out, "tensorboard", f"seed={seed}"))
        for name in names:
            assert logged[name] == pytest.approx(want[seed, name], rel=1e-5), (seed, name)
        assert logged["final/eval_return"] == pytest.approx({last: summary["eval_return"][seed]})
    from tensorboardX.proto import event_pb2

    tags = set()
    for path in glob.glob(os.path.join(out, "tensorboard", "events.out.tfevents.*")):
        data, pos = open(path, "rb").read(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            tags |= {(v.tag, v.WhichOneof("value")) for v in event.summary.value}
    assert ("learning_curve", "image") in tags and any(t == "config/text_summary" for t, _ in tags)

    # W&B: one run, each member's metrics under its label, the config with the versions, the summary
    history, config, wsummary = wandb_history(out)
    for seed in (0, 1):
        for name in names:
            assert history[f"seed={seed}/{name}"] == pytest.approx(want[seed, name], rel=1e-5), (seed, name)
        assert wsummary[f"seed={seed}/final_eval_return"] == pytest.approx(summary["eval_return"][seed])
    assert config["versions"]["jax"] and config["members"] == summary["members"]
    assert "learning_curve" in history or any(k.startswith("learning_curve") for k in wsummary)

    # MLflow: a run per member in the run directory's own store, with the image as an artifact
    uri = f"sqlite:///{os.path.join(out, 'mlflow.db')}"
    client = MlflowClient(tracking_uri=uri)
    runs = mlflow_runs(uri, "rlx")
    assert sorted(runs) == ["seed=0", "seed=1"]
    for seed in (0, 1):
        run = runs[f"seed={seed}"]
        assert run.info.status == "FINISHED"
        for name in names:
            history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, name)}
            assert history == pytest.approx(want[seed, name], rel=1e-5), (seed, name)
        assert run.data.metrics["final_eval_return"] == pytest.approx(summary["eval_return"][seed])
        assert "learning_curve.png" in [a.path for a in client.list_artifacts(run.info.run_id)]

    # A refused run (the directory holds this run) builds no tracker: nothing new appears.
    before = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)
    assert cli.main(args) == 1
    assert sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs) == before


def test_runner_trackers_by_name_match_metrics_csv(tmp_path, tiny_ppo):
    from rlx.logging import read_metrics
    from rlx.population import make_population
    from rlx.train import Runner

    agent, cfg, params = tiny_ppo
    pop = make_population(cfg, seeds=[1, 4])
    out_dir = str(tmp_path / "run")
    Runner(agent, pop, params, out_dir, chunk_updates=2, devices=1, progress=False, population_mode="map",
           trackers=["tensorboard"]).run()  # fmt: skip
    csv = read_metrics(os.path.join(out_dir, "metrics.csv"))
    finished = 0
    for seed in (1, 4):
        rows = csv["seed"] == seed
        want = {int(u): float(v) for u, v in zip(csv["update_index"][rows], csv["episode_return"][rows]) if not np.isnan(v)}
        logged = read_tensorboard(os.path.join(out_dir, "tensorboard", f"seed={seed}"))
        assert logged["episode_return"] == pytest.approx(want, rel=1e-5)  # the csv keeps 6 digits
        assert sorted(logged["env_steps"]) == list(range(agent.num_updates(cfg)))
        finished += len(want)
    assert finished > 0


def test_trackers_refuse_bad_names_and_missing_packages_before_anything(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="tracker 'neptune' is invalid: accepted values are tensorboard, wandb, mlflow"):
        tracking.Trackers("tensorboard,neptune")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(tracking.TrackerMissingError, match=r"^wandb is not installed: pip install 'rlx\[tracking\]'$"):
        tracking.Trackers(["wandb"])
    with pytest.raises(ValueError, match="need an out_dir"):
        from rlx.hostloop import HostLoop

        HostLoop(object(), None, trackers=tracking.Trackers(()))
