"""Host-side writers used by the chunk driver: metrics CSV, JSON records, versions."""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
from importlib import metadata
from typing import Any, Sequence

import numpy as np

FIRST_COLUMNS = ("member", "seed", "update", "env_steps", "episode_return")


class MetricsCSV:
    """Appends one row per (member, update) to `metrics.csv`.

    Columns are fixed by the first append (or by the header of an existing file,
    when a run is resumed): the fixed first columns, the member's swept fields, then
    the metric names in sorted order.
    """

    def __init__(self, path: str, member_keys: Sequence[str]):
        self.path = path
        self.member_keys = [k for k in member_keys if k not in FIRST_COLUMNS]
        self.columns: list[str] | None = None
        if os.path.exists(path):
            with open(path, newline="") as f:
                header = next(csv.reader(f), None)
            self.columns = header or None

    def truncate(self, num_updates: int) -> None:
        """Keep only rows with `update < num_updates` (used when resuming)."""
        if not os.path.exists(self.path):
            return
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        header, body = rows[0], rows[1:]
        col = header.index("update")
        keep = [r for r in body if int(r[col]) < num_updates]
        with open(self.path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(keep)

    def append(self, metrics: dict[str, np.ndarray], members: list[dict], first_update: int) -> None:
        """`metrics[name]`: `[P, K]` for K updates starting at `first_update`."""
        if self.columns is None:
            rest = sorted(k for k in metrics if k not in FIRST_COLUMNS)
            self.columns = list(FIRST_COLUMNS) + self.member_keys + rest
        new = not os.path.exists(self.path)
        num_members, k = next(iter(metrics.values())).shape[:2]
        with open(self.path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(self.columns)
            for i in range(num_members):
                for j in range(k):
                    row = []
                    for col in self.columns:
                        if col == "update":
                            row.append(first_update + j)
                        elif col in metrics:
                            row.append(_fmt(metrics[col][i, j]))
                        else:
                            row.append(members[i].get(col, ""))
                    w.writerow(row)


def _fmt(x: Any) -> Any:
    x = np.asarray(x)
    if x.ndim:  # vector metrics (multi-objective returns) go in as "a;b;c"
        return ";".join(_fmt(v) for v in x)
    if x.dtype.kind in "iub":
        return int(x)
    v = float(x)
    return "nan" if np.isnan(v) else f"{v:.6g}"


def read_metrics(path: str) -> dict[str, np.ndarray]:
    """Read `metrics.csv` back as columns (float where possible)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, np.ndarray] = {}
    for key in rows[0] if rows else []:
        values = [r[key] for r in rows]
        try:
            out[key] = np.asarray([float(v) if v != "" else np.nan for v in values])
        except ValueError:
            out[key] = np.asarray(values)
    return out


def write_json(path: str, data: Any) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2, default=_json_default)
        f.write("\n")


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
