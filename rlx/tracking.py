"""Experiment trackers: TensorBoard, Weights & Biases and MLflow, beside metrics.csv.

    Runner(agent, population, params, out_dir, trackers=["tensorboard", "wandb"]).run()

(`rlx train ... --log tensorboard,wandb` from the command line). Trackers named so are
built once the run has passed its checks, so a refused run leaves no tracker files, and
are closed when it ends; they get the run's config with the package versions. A tracker
is also a plain chunk callback, for a host loop of one's own:

    with make_tracker("tensorboard", out_dir, population.members, config) as tracker:
        Runner(agent, population, params, out_dir, on_chunk=tracker).run()

The Runner calls `tracker(updates_done, metrics)` after each saved chunk, with
`metrics[name]` of shape `[P, k]` (or `[P, k, d]` for vector metrics such as
multi-objective returns) for the chunk's k updates `updates_done - k .. updates_done - 1`.
Every tracker logs every metric of every member at its global update index, one scalar
per component of a vector metric (`name/0`, `name/1`, ...), and skips NaN values (an
update in which no episode finished has no `episode_return`). Members are told apart by a
label of their swept values, e.g. `seed=3` or `lr=0.001,seed=3`, in each tool's own way
of comparing runs: a TensorBoard run (subfolder) per member, a key prefix in one W&B run
(`seed=3/episode_return`), an MLflow run per member with its values as params (MLflow
refuses `=` in metric names).

The trackers' packages are the `tracking` extra (`pip install 'rlx[tracking]'`) and are
imported only when a tracker is built, so `import rlx.tracking` costs nothing.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Iterator, Sequence

import numpy as np

from rlx.errors import RunError

TRACKERS = ("tensorboard", "wandb", "mlflow")
_PACKAGES = {"tensorboard": "tensorboardX", "wandb": "wandb", "mlflow": "mlflow-skinny"}


class TrackerMissingError(RunError, ImportError):
    """A tracker's package is not installed."""


def _require(tracker: str, module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        if err.name == module:
            raise TrackerMissingError(f"{_PACKAGES[tracker]} is not installed: pip install 'rlx[tracking]'") from None
        # Installed but broken, e.g. a dependency missing or at an incompatible version.
        raise TrackerMissingError(f"{_PACKAGES[tracker]} does not import ({err}): "
                                  "pip install 'rlx[tracking]' (or the versions in requirements.lock)") from None  # fmt: skip


def member_labels(members: Sequence[dict]) -> list[str]:
    """A short unique label per member from its swept values (`member` left out): e.g.
    `seed=3`, `lr=0.001,seed=3`; `member=i,...` when values alone do not tell members apart."""
    labels = [",".join(f"{k}={_plain(v)}" for k, v in m.items() if k != "member") for m in members]
    if len(set(labels)) < len(labels) or not all(labels):
        labels = [",".join(filter(None, (f"member={m.get('member', i)}", label)))
                  for i, (m, label) in enumerate(zip(members, labels))]  # fmt: skip
    return labels


def chunk_scalars(updates_done: int, metrics: dict[str, Any]) -> Iterator[tuple[int, int, dict[str, float]]]:
    """`(member, update, {name: value})` for each member and update of a chunk, NaN values
    left out. `metrics[name]`: `[P, k]`, or `[P, k, ...]` for vector metrics (one scalar
    per component, named `name/i`); update `j` of the chunk is `updates_done - k + j`."""
    arrays = {name: np.asarray(v) for name, v in metrics.items()}
    arrays = {name: a for name, a in arrays.items() if a.dtype.kind in "biuf" and a.ndim >= 2}
    if not arrays:
        return
    num_members, k = next(iter(arrays.values())).shape[:2]
    first = updates_done - k
    for member in range(num_members):
        for j in range(k):
            row: dict[str, float] = {}
            for name, a in arrays.items():
                value = a[member, j]
                if value.ndim == 0:
                    parts = [(name, value)]
                else:
                    parts = [(f"{name}/{'/'.join(map(str, i))}", value[i]) for i in np.ndindex(value.shape)]
                for key, x in parts:
                    x = float(x)
                    if not np.isnan(x):
                        row[key] = x
            yield member, first + j, row


def _plain(x: Any) -> Any:
    """numpy scalars and arrays as Python values (for labels, configs and params)."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


class _Tracker:
    """What every tracker does: `tracker(updates_done, metrics)` per chunk, then the run's
    end results (`log_summary`, `log_image`), then `close`."""

    def log_summary(self, values: dict[str, Sequence[float]], step: int) -> None:
        """Per-member end results, `values[name]`: `[P]` (e.g. the final evaluation return)."""
        raise NotImplementedError

    def log_image(self, name: str, path: str, step: int) -> None:
        """An image file (e.g. learning_curve.png) under `name`."""
        raise NotImplementedError

    def close(self, failed: bool = False) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(failed=kind is not None)


class TensorBoardTracker(_Tracker):
    """One TensorBoard run per member: scalars under `log_dir/<label>/`, tagged by metric
    name, so each metric's chart overlays the members. The folders are made at the first
    chunk, so building the tracker leaves no trace. `tensorboard --logdir log_dir`."""

    def __init__(self, log_dir: str, members: Sequence[dict], config: dict | None = None):
        self._writer_class = _require("tensorboard", "tensorboardX").SummaryWriter
        self.log_dir = log_dir
        self.labels = member_labels(members)
        self.config = config
        # A label may hold a "/" (a swept string value); keep each member one folder deep.
        self.run_dirs = [os.path.join(log_dir, label.replace("/", "_").replace(os.sep, "_")) for label in self.labels]
        self._writers: list[Any] | None = None
        self._run_writer: Any = None  # the population's own run (log_dir itself): config and images

    def _open(self) -> list[Any]:
        if self._writers is None:
            self._writers = [self._writer_class(d) for d in self.run_dirs]
            if self.config is not None:
                text = "```\n" + json.dumps(_plain(self.config), indent=1, default=str) + "\n```"
                self._population_writer().add_text("config", text, 0)
        return self._writers

    def _population_writer(self) -> Any:
        if self._run_writer is None:
            self._run_writer = self._writer_class(self.log_dir)
        return self._run_writer

    def __call__(self, updates_done: int, metrics: dict[str, np.ndarray]) -> None:
        writers = self._open()
        for member, update, row in chunk_scalars(updates_done, metrics):
            for name, value in row.items():
                writers[member].add_scalar(name, value, update)
        for w in writers:  # each chunk on disk before training goes on
            w.flush()

    def log_summary(self, values: dict[str, Sequence[float]], step: int) -> None:
        writers = self._open()
        for name, per_member in values.items():
            for w, value in zip(writers, np.asarray(per_member, float).reshape(len(writers), -1)):
                for i, v in enumerate(value):
                    if np.isfinite(v):
                        w.add_scalar(f"final/{name}" + (f"/{i}" if value.size > 1 else ""), float(v), step)
            for w in writers:
                w.flush()

    def log_image(self, name: str, path: str, step: int) -> None:
        from matplotlib import image

        writer = self._population_writer()
        writer.add_image(name, image.imread(path)[..., :3], step, dataformats="HWC")
        writer.flush()

    def close(self, failed: bool = False) -> None:
        for w in (self._writers or []) + ([self._run_writer] if self._run_writer is not None else []):
            w.close()
        self._writers = self._run_writer = None


class WandbTracker(_Tracker):
    """One Weights & Biases run for the population: each metric as `<label>/<name>` at
    step = update, and `config` with the list of `members` as the run's config. `mode`:
    "online", "offline" (sync later with `wandb sync`), "disabled", or None for wandb's
    default (`WANDB_MODE`). The run starts here, so a login problem shows before training."""

    def __init__(
        self,
        project: str | None,
        members: Sequence[dict],
        *,
        config: dict | None = None,
        mode: str | None = None,
        dir: str | None = None,
        name: str | None = None,
        group: str | None = None,
    ):
        wandb = _require("wandb", "wandb")
        self.labels = member_labels(members)
        run_config = {**_plain(dict(config or {})), "members": _plain(list(members))}
        if dir is not None:
            os.makedirs(dir, exist_ok=True)
        # create_new: several trackers (or a tracker beside the user's own run) can live in one process
        self.run = wandb.init(project=project, config=run_config, mode=mode, dir=dir, name=name, group=group,
                              reinit="create_new")  # fmt: skip

    def __call__(self, updates_done: int, metrics: dict[str, np.ndarray]) -> None:
        by_update: dict[int, dict[str, float]] = {}
        for member, update, row in chunk_scalars(updates_done, metrics):
            by_update.setdefault(update, {}).update({f"{self.labels[member]}/{k}": v for k, v in row.items()})
        for update in sorted(by_update):  # W&B steps must increase
            if by_update[update]:
                self.run.log(by_update[update], step=update)

    def log_summary(self, values: dict[str, Sequence[float]], step: int) -> None:
        for name, per_member in values.items():
            for label, value in zip(self.labels, _plain(list(per_member))):
                self.run.summary[f"{label}/final_{name}"] = value

    def log_image(self, name: str, path: str, step: int) -> None:
        import wandb

        self.run.log({name: wandb.Image(path)})

    def close(self, failed: bool = False) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None


class MLflowTracker(_Tracker):
    """One MLflow run per member in `experiment` (made if missing), named `<run_name>/<label>`
    and tagged `rlx.run = run_name`, with the member's values and `config` (flattened to
    dotted keys) as params; metrics by name at step = update. `tracking_uri`: e.g.
    "sqlite:///path/mlflow.db", "http://host:5000", or None for MLflow's default
    (`MLFLOW_TRACKING_URI`); MLflow 3 refuses the "file:" store unless
    `MLFLOW_ALLOW_FILE_STORE=true`."""

    def __init__(
        self,
        tracking_uri: str | None,
        experiment: str,
        members: Sequence[dict],
        *,
        config: dict | None = None,
        run_name: str | None = None,
        artifact_location: str | None = None,
    ):
        _require("mlflow", "mlflow")
        from mlflow.entities import Metric, Param, RunStatus
        from mlflow.tracking import MlflowClient
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        self._metric, self._status = Metric, RunStatus
        self._metrics_per_batch = MAX_METRICS_PER_BATCH
        self.client = MlflowClient(tracking_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (found.experiment_id if found is not None
                              else self.client.create_experiment(experiment, artifact_location=artifact_location))  # fmt: skip
        self.labels = member_labels(members)
        shared = _flatten(_plain(dict(config or {})))
        self.run_ids: list[str] = []
        for label, member in zip(self.labels, members):
            tags = {"rlx.member_label": label, **({"rlx.run": run_name} if run_name else {})}
            run = self.client.create_run(self.experiment_id, run_name=f"{run_name}/{label}" if run_name else label, tags=tags)
            values = {**shared, **_flatten(_plain(dict(member)))}
            params = [Param(_param_key(k), _param_value(v, MAX_PARAM_VAL_LENGTH)) for k, v in values.items()]
            for i in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
                self.client.log_batch(run.info.run_id, params=params[i : i + MAX_PARAMS_TAGS_PER_BATCH])
            self.run_ids.append(run.info.run_id)

    def __call__(self, updates_done: int, metrics: dict[str, np.ndarray]) -> None:
        now = int(time.time() * 1000)
        batches: list[list[Any]] = [[] for _ in self.run_ids]
        for member, update, row in chunk_scalars(updates_done, metrics):
            batches[member] += [self._metric(name, value, now, update) for name, value in row.items()]
        for run_id, batch in zip(self.run_ids, batches):
            for i in range(0, len(batch), self._metrics_per_batch):
                self.client.log_batch(run_id, metrics=batch[i : i + self._metrics_per_batch])

    def log_summary(self, values: dict[str, Sequence[float]], step: int) -> None:
        now = int(time.time() * 1000)
        for m, run_id in enumerate(self.run_ids):
            batch = []
            for name, per_member in values.items():
                value = np.asarray(per_member, float).reshape(len(self.run_ids), -1)[m]
                batch += [self._metric(f"final_{name}" + (f"/{i}" if value.size > 1 else ""), float(v), now, step)
                          for i, v in enumerate(value) if np.isfinite(v)]  # fmt: skip
            if batch:
                self.client.log_batch(run_id, metrics=batch)

    def log_image(self, name: str, path: str, step: int) -> None:
        for run_id in self.run_ids:
            self.client.log_artifact(run_id, path)

    def close(self, failed: bool = False) -> None:
        status = self._status.to_string(self._status.FAILED if failed else self._status.FINISHED)
        for run_id in self.run_ids:
            self.client.set_terminated(run_id, status=status)
        self.run_ids = []


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _param_key(key: str) -> str:
    # MLflow names allow only alphanumerics and _ - . space : /
    return re.sub(r"[^\w.\- :/]", "_", key)


def _param_value(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def make_tracker(name: str, out_dir: str, members: Sequence[dict], config: dict | None = None) -> _Tracker:
    """A tracker by name ("tensorboard", "wandb" or "mlflow") for the run in `out_dir`:

    - tensorboard: `out_dir/tensorboard/<label>/`
    - wandb: project `WANDB_PROJECT` (default "rlx"), named after `out_dir`, files in
      `out_dir/wandb/`, mode from `WANDB_MODE`
    - mlflow: `MLFLOW_TRACKING_URI` (default `sqlite:///<out_dir>/mlflow.db`), experiment
      `MLFLOW_EXPERIMENT_NAME` (default "rlx"), runs named after `out_dir`

    Raises TrackerMissingError (an ImportError) in one line naming the extra to install.
    """
    if name not in TRACKERS:
        raise ValueError(f"tracker = {name!r} is invalid: accepted values are {', '.join(TRACKERS)}.")
    run_name = os.path.basename(os.path.normpath(out_dir))
    if name == "tensorboard":
        return TensorBoardTracker(os.path.join(out_dir, "tensorboard"), members, config)
    if name == "wandb":
        # WANDB_MODE read here, not left to wandb: its settings are fixed when it is first set
        # up in a process, so a later change of the variable would be missed.
        return WandbTracker(os.environ.get("WANDB_PROJECT", "rlx"), members, config=config,
                            mode=os.environ.get("WANDB_MODE"), dir=out_dir, name=run_name)  # fmt: skip
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    artifacts = None
    if uri is None:  # the run's own store, its artifacts beside it (MLflow's default is ./mlruns in the cwd)
        uri = f"sqlite:///{os.path.abspath(os.path.join(out_dir, 'mlflow.db'))}"
        artifacts = "file://" + os.path.abspath(os.path.join(out_dir, "mlflow-artifacts"))
    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri[len("sqlite:///") :]) or ".", exist_ok=True)
    return MLflowTracker(uri, os.environ.get("MLFLOW_EXPERIMENT_NAME", "rlx"), members, config=config,
                         run_name=run_name, artifact_location=artifacts)  # fmt: skip


class Trackers(_Tracker):
    """Trackers chosen by name, used as one. Building it only checks the names and that
    their packages are installed; the trackers themselves (which create files, or a W&B
    run) are built by `open`, which the host loop calls once the run has passed its
    checks, so a refused run leaves nothing behind.

        with Trackers(["tensorboard", "mlflow"]) as trackers:
            Runner(..., trackers=trackers).run()
            trackers.log_summary({"eval_return": returns}, step)   # [P]
    """

    def __init__(self, names: Sequence[str] | str = ()):
        names = [n for n in names.split(",") if n] if isinstance(names, str) else list(names)
        import importlib.util

        modules = {"tensorboard": "tensorboardX", "wandb": "wandb", "mlflow": "mlflow"}
        for name in names:
            if name not in TRACKERS:
                raise ValueError(f"tracker {name!r} is invalid: accepted values are {', '.join(TRACKERS)}.")
            if importlib.util.find_spec(modules[name]) is None:
                raise TrackerMissingError(f"{_PACKAGES[name]} is not installed: pip install 'rlx[tracking]'")
        self.names = list(dict.fromkeys(names))
        self.trackers: list[_Tracker] = []

    def open(self, out_dir: str, members: Sequence[dict], config: dict | None = None) -> None:
        """Build every tracker for the run in `out_dir` (once); `config` gains the versions."""
        from rlx.logging import versions

        if self.trackers or not self.names:
            return
        config = {**dict(config or {}), "versions": versions()}
        for name in self.names:
            self.trackers.append(make_tracker(name, out_dir, members, config))

    def __call__(self, updates_done: int, metrics: dict[str, np.ndarray]) -> None:
        for t in self.trackers:
            t(updates_done, metrics)

    def log_summary(self, values: dict[str, Sequence[float]], step: int) -> None:
        for t in self.trackers:
            t.log_summary(values, step)

    def log_image(self, name: str, path: str, step: int) -> None:
        for t in self.trackers:
            t.log_image(name, path, step)

    def close(self, failed: bool = False) -> None:
        for t in self.trackers:
            t.close(failed)
        self.trackers = []


__all__ = [
    "Trackers", "TRACKERS", "TrackerMissingError", "TensorBoardTracker", "WandbTracker", "MLflowTracker",
    "make_tracker", "member_labels", "chunk_scalars",
]  # fmt: skip
