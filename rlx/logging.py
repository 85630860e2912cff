"""Host-side writers used by the chunk driver: metrics CSV, JSON records, versions."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from typing import Any, Sequence

import numpy as np

from rlx import faults
from rlx.errors import RunFileError
from rlx.runfiles import atomic_open

# The step column is "update_index", not "update": a column named "update" would be
# shadowed by `DataFrame.update` in pandas (`df.update` is a method). Runs written before
# the rename are read (`read_metrics`) and resumed (`MetricsCSV.repair`) under the new name.
FIRST_COLUMNS = ("member", "seed", "update_index", "env_steps", "episode_return")
LEGACY_STEP_COLUMNS = {"update": "update_index"}


class MetricsCSV:
    """One row per (member, update) in `metrics.csv`, safe against kills and full disks.

    Columns are fixed by the first append (or by the header of an existing file, when a
    run is resumed): the fixed first columns, the member's swept fields, then the metric
    names in sorted order. Rows are appended a chunk at a time and fsynced before the
    chunk's checkpoint is saved; a row torn by a kill or a full disk has no final newline,
    and `repair` drops it (with every row past the checkpoint) through an atomic rewrite.
    """

    def __init__(self, path: str, member_keys: Sequence[str], first: Sequence[str] = FIRST_COLUMNS,
                 step: str = "update_index"):  # fmt: skip
        self.path = path
        self.first = list(first)  # the fixed first columns; they hold "member" and the `step` column
        self.step = step
        self.member_keys = [k for k in member_keys if k not in self.first]
        self.columns: list[str] | None = None

    def repair(self, num_updates: int, num_members: int) -> None:
        """Keep exactly the rows with `update_index < num_updates` (the restored checkpoint's
        count), checking that every member has each of them; drop a torn last row. A file
        written before the step column's rename gets the new header."""
        if not os.path.exists(self.path):
            if num_updates:
                raise RunFileError(f"{self.path} is missing but the checkpoint is at update {num_updates}: "
                                   "the run's history is lost; start a new run.")  # fmt: skip
            return
        with open(self.path, newline="") as f:
            text = f.read()
        complete = text[: text.rfind("\n") + 1]  # a last line without its newline is torn
        lines = complete.splitlines()
        renamed = False
        if lines:  # written before the step column's rename: give it the new header
            old, n = lines[0].split(","), len(self.first)
            header = [LEGACY_STEP_COLUMNS.get(c, c) for c in old[:n]] + old[n:]
            if header != old and header[:n] == self.first:
                lines[0], renamed = ",".join(header), True
        if not lines or lines[0].split(",")[: len(self.first)] != self.first:
            if num_updates == 0:  # nothing of value yet: start the file again
                os.unlink(self.path)
                return
            raise RunFileError(f"{self.path} has no valid header (it starts {text[:40]!r}): "
                               "restore it from a copy, or start a new run.")  # fmt: skip
        header = lines[0].split(",")
        n = len(self.first)
        if header[n : n + len(self.member_keys)] != self.member_keys:
            raise RunFileError(f"{self.path} holds columns {header[n:][:len(self.member_keys)]} "
                               f"where this run has {self.member_keys}: it belongs to another run.")  # fmt: skip
        col, member_col = header.index(self.step), header.index("member")
        keep, seen = [lines[0]], set()
        for number, row in enumerate(csv.reader(lines[1:]), 2):
            try:
                update, member = int(row[col]), int(row[member_col])
            except (ValueError, IndexError):
                raise RunFileError(f"{self.path} line {number} is corrupt ({','.join(row)[:60]!r}); "
                                   "restore the file from a copy, or start a new run.") from None  # fmt: skip
            if len(row) != len(header):
                raise RunFileError(f"{self.path} line {number} has {len(row)} fields, not {len(header)}; "
                                   "restore the file from a copy, or start a new run.")  # fmt: skip
            if update < num_updates:
                keep.append(lines[number - 1])
                seen.add((member, update))
        if len(seen) != num_updates * num_members:
            raise RunFileError(f"{self.path} has {len(seen)} of the {num_updates * num_members} rows up to update "
                               f"{num_updates} that the checkpoint needs; restore it from a copy, or start a new run.")  # fmt: skip
        self.columns = header
        if renamed or len(keep) != len(lines) or len(complete) != len(text):
            body = "\r\n".join(keep) + "\r\n"
            with atomic_open(self.path, "w", newline="") as f:
                f.write(body)
                faults.point("csv.truncate.written")

    def append(self, metrics: dict[str, np.ndarray], members: list[dict], first_update: int) -> None:
        """`metrics[name]`: `[P, K]` for K updates starting at `first_update`."""
        rest = sorted(k for k in metrics if k not in self.first)
        expected = self.first + self.member_keys + rest
        if self.columns is None:
            self.columns = expected
        elif self.columns != expected:
            raise RunFileError(f"{self.path} has columns {self.columns} but this run writes {expected}: "
                               "it belongs to another run or version; start a new run.")  # fmt: skip
        num_members, k = next(iter(metrics.values())).shape[:2]
        buf = io.StringIO()
        w = csv.writer(buf)
        for i in range(num_members):
            for j in range(k):
                row = []
                for col in self.columns:
                    if col == self.step:
                        row.append(first_update + j)
                    elif col in metrics:
                        row.append(_fmt(metrics[col][i, j]))
                    else:
                        row.append(members[i].get(col, ""))
                w.writerow(row)
        if not os.path.exists(self.path):  # the header is never torn
            with atomic_open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        data = buf.getvalue()
        with open(self.path, "a", newline="") as f:
            half = len(data) // 2
            f.write(data[:half])
            f.flush()
            faults.point("csv.append.torn")
            f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())
        faults.point("csv.appended")


def _fmt(x: Any) -> Any:
    x = np.asarray(x)
    if x.ndim:  # vector metrics (multi-objective returns) go in as "a;b;c"
        return ";".join(_fmt(v) for v in x)
    if x.dtype.kind in "iub":
        return int(x)
    if np.isnan(x):
        return "nan"
    # The shortest text that reads back as the same number (of the value's own precision):
    # a resumed run's history, read back from this file, equals an uninterrupted one's.
    return str(x[()])


def read_metrics(path: str) -> dict[str, np.ndarray]:
    """Read `metrics.csv` back as columns: float `[rows]` where possible, `[rows, d]` for
    vector metrics (written as `a;b;...`), else strings. The step column of older runs
    ("update") comes back under its current name ("update_index")."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, np.ndarray] = {}
    keys = list(rows[0]) if rows else []
    for column in keys:
        values = [r[column] for r in rows]
        new = LEGACY_STEP_COLUMNS.get(column)
        key = new if new and new not in keys else column
        try:
            if any(";" in v for v in values):
                width = max(v.count(";") + 1 for v in values)
                out[key] = np.asarray([[float(x) for x in v.split(";")] if v else [np.nan] * width for v in values])
            else:
                out[key] = np.asarray([float(v) if v != "" else np.nan for v in values])
        except ValueError:
            out[key] = np.asarray(values)
    return out


def write_json(path: str, data: Any) -> None:
    """Write `data` as JSON, atomically (`rlx.runfiles.atomic_open`)."""
    with atomic_open(path) as f:
        json.dump(data, f, indent=2, default=_json_default)
        f.write("\n")


def append_versions(path: str, first_update: int) -> None:
    """Add this segment of a run (first update, time, `versions()`) to `versions.json`;
    a resumed run keeps the record of every earlier segment."""
    segments = []
    if os.path.exists(path):
        with contextlib.suppress(OSError, ValueError):
            with open(path) as f:
                old = json.load(f)
            segments = old.get("segments", [old]) if isinstance(old, dict) else []
    segment = {"first_update": int(first_update), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **versions()}
    write_json(path, {"segments": segments + [segment]})


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.ndarray, np.generic)):
        return x.tolist()
    return str(x)


def versions() -> dict[str, Any]:
    """Package versions and git sha, so every result can be traced back."""
    out: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("rlx", "jax", "jaxlib", "flax", "optax", "gymnax", "brax", "orbax-checkpoint", "evosax", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=5)
        out["git_sha"] = sha.stdout.strip() or None
        out["git_dirty"] = bool(dirty.stdout.strip()) if sha.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        out["git_sha"] = None
    try:
        import jax

        out["devices"] = [str(d) for d in jax.devices()]
        out["backend"] = jax.default_backend()
    except Exception:  # versions() must never fail a run
        pass
    return out
