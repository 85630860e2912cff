"""Runs side by side: members grouped by their swept values, honest aggregates, two plots.

    rlx compare runs/ppo-a runs/ppo-b            # one group per run
    rlx compare runs/sweep --by lr               # one group per learning rate
    rlx compare runs/a runs/b --by lr --out cmp  # groups (run, lr)

Each member's score is its final training return (the mean `episode_return` of the last
5% of its updates, as the summary after `rlx train` prints it) and, where the run's
`summary.json` holds one, its deterministic evaluation return. Per group: the number of
members, mean, IQM and median, with 95% stratified bootstrap intervals (`rlx.stats`) from
`MIN_MEMBERS_FOR_CI` members up, and the min-max range below that; and the probability
that a member of the group beats one of the first group. Writes `compare.csv`,
`compare.json`, `learning_curves.png` and `aggregates.png`.

The grouping is also what the summary printed after a sweep uses (`group_members`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import numpy as np

from rlx.errors import RunError, RunFileError
from rlx.plotting import MIN_MEMBERS_FOR_CI

FINAL_FRACTION = 0.05  # the final return: the mean of the last 5% of updates


def swept_keys(members: Sequence[dict]) -> list[str]:
    """The member fields that vary over the population, `member` and `seed` left out."""
    keys = [k for k in dict.fromkeys(k for m in members for k in m) if k not in ("member", "seed")]
    return [k for k in keys if len({json.dumps(m.get(k), default=str) for m in members}) > 1]


def group_members(members: Sequence[dict], by: Sequence[str]) -> dict[str, list[int]]:
    """`{label: [member indices]}` with labels like `lr=0.001,gamma=0.99` from the fields
    `by`, in first-seen order; one group labelled "" when `by` is empty."""
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(members):
        label = ",".join(f"{k}={_value(m.get(k))}" for k in by)
        groups.setdefault(label, []).append(i)
    return groups


def _value(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def final_returns(y: np.ndarray) -> np.ndarray:
    """Each member's mean over the last `FINAL_FRACTION` of its updates, NaN ignored. `[P, U]` -> `[P]`."""
    y = np.asarray(y, float)
    with np.errstate(all="ignore"):
        return np.nanmean(y[:, -max(1, int(y.shape[1] * FINAL_FRACTION)) :], 1)


def describe(values: np.ndarray, reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Mean, IQM and median of `values` `[n]` (NaN dropped), with 95% stratified bootstrap
    intervals from `MIN_MEMBERS_FOR_CI` values up (and `reps` > 0); otherwise the interval
    entries are None and `min`/`max` say the range."""
    from rlx import stats

    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    out: dict[str, Any] = {"n": int(v.size)}
    if not v.size:
        return {**out, **dict.fromkeys(("mean", "iqm", "median", "min", "max"))}
    out.update(mean=float(v.mean()), iqm=stats.iqm(v), median=float(np.median(v)), min=float(v.min()), max=float(v.max()))
    for name, fn in (("mean", stats.mean), ("iqm", stats.iqm), ("median", stats.median)):
        ci = stats.stratified_bootstrap_ci(v, fn, reps=reps, seed=seed) if v.size >= MIN_MEMBERS_FOR_CI and reps else (None, None)
        out[f"{name}_ci"] = [float(c) if c is not None else None for c in ci]
    return out


class RunScores:
    """One run directory's members, their learning curves and final scores, read from
    config.json, metrics.csv and summary.json (no checkpoint, no jax)."""

    def __init__(self, run_dir: str):
        from rlx.runfiles import read_json
        from rlx.runs import read_metrics_so_far

        self.directory = run_dir
        self.name = os.path.basename(os.path.normpath(run_dir))
        config_path, metrics_path = os.path.join(run_dir, "config.json"), os.path.join(run_dir, "metrics.csv")
        for path in (config_path, metrics_path):
            if not os.path.exists(path):
                raise RunFileError(f"{path} is missing: pass the directory of a run `rlx train` wrote.")
        spec = read_json(config_path, "config.json")
        metrics = read_metrics_so_far(metrics_path)
        if "episode_return" not in metrics or "member" not in metrics:
            raise RunError(f"{metrics_path} has no episode_return per member: `rlx compare` compares agent runs "
                           f"(rlx train ALGO), and {run_dir} is a {spec.get('kind', 'different')} run.")  # fmt: skip
        self.members: list[dict] = (spec.get("runner") or {}).get("members") or [
            {"member": int(m)} for m in np.unique(metrics["member"])
        ]
        ids = metrics["member"].astype(int)
        rows = [np.flatnonzero(ids == i) for i in range(len(self.members))]
        length = min(len(r) for r in rows)  # a live run's members may be a chunk apart
        self.x = np.stack([metrics["env_steps"][r[:length]] for r in rows])  # [P, U]
        returns = [metrics["episode_return"][r[:length]] for r in rows]
        self.y = np.stack(returns)  # [P, U], or [P, U, d] for vector rewards
        weights = None
        if self.y.ndim == 3:  # vector rewards: the preference-weighted return, as the summary plots it
            d = self.y.shape[2]
            weights = np.asarray([m.get("weights", np.full(d, 1 / d)) for m in self.members], float)  # [P, d]
            self.y = np.einsum("mud,md->mu", self.y, weights)
        self.train = final_returns(self.y)
        summary_path = os.path.join(run_dir, "summary.json")
        summary = read_json(summary_path, "summary.json") if os.path.exists(summary_path) else {}
        ev = summary.get("eval_return") if isinstance(summary, dict) else None
        self.eval = None
        if ev is not None:
            ev = np.asarray(ev, float)
            self.eval = ev if weights is None or ev.ndim == 1 else np.einsum("md,md->m", ev, weights)


def compare(run_dirs: Sequence[str], by: Sequence[str] | None = None) -> list[dict]:
    """One dict per group of members: its label, run, members and `describe` of its final
    training (and evaluation) returns, and `p_improvement` over the first group (with its
    interval when both have `MIN_MEMBERS_FOR_CI` members). `by` None: every swept field."""
    from rlx import stats

    if not run_dirs:
        raise RunError("rlx compare needs at least one run directory.")
    runs = [RunScores(d) for d in run_dirs]
    names = [r.name for r in runs]
    if len(set(names)) < len(names):
        names = [os.path.normpath(r.directory) for r in runs]
    groups: list[dict] = []
    for run, name in zip(runs, names):
        keys = swept_keys(run.members) if by is None else list(by)
        missing = [k for k in keys if any(k not in m for m in run.members)]
        if missing:
            have = sorted({k for m in run.members for k in m} - {"member"})
            raise RunError(f"--by {','.join(missing)}: {run.directory}'s members have no such field; "
                           f"they have {', '.join(have)}.")  # fmt: skip
        for label, idx in group_members(run.members, keys).items():
            full = ",".join(filter(None, (name if len(runs) > 1 else "", label))) or name
            groups.append(dict(label=full, run=run.directory, members=idx, _run=run))
    reference = groups[0]
    for g in groups:
        run, idx = g.pop("_run"), g["members"]
        g["_curve"] = (run.x[idx], run.y[idx])
        g["train"] = describe(run.train[idx])
        g["eval"] = describe(run.eval[idx]) if run.eval is not None else None
        g["_scores"] = run.train[idx]
    ref = reference["_scores"]
    for g in groups:
        x, y = g["_scores"], ref
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
        g["p_improvement"] = stats.probability_of_improvement(x, y) if x.size and y.size else None
        enough = x.size >= MIN_MEMBERS_FOR_CI and y.size >= MIN_MEMBERS_FOR_CI and g is not reference
        g["p_improvement_ci"] = list(stats.stratified_bootstrap_ci((x, y), stats.probability_of_improvement, reps=2000)) if enough else None
    return groups


def _interval(d: dict, name: str) -> str:
    if d is None or d["n"] == 0:
        return "-"
    ci = d.get(f"{name}_ci") or [None, None]
    if ci[0] is None:
        return f"{d[name]:.1f}"
    return f"{d[name]:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]"


def table(groups: Sequence[dict]) -> str:
    """The groups as a plain-text table (what `rlx compare` prints)."""
    head = ["group", "n", "final return: mean [95% CI]", "IQM [95% CI]", "median", "min-max", "eval mean", "P(> first)"]
    rows = []
    for g in groups:
        t, e = g["train"], g["eval"]
        p = "-" if g["p_improvement"] is None else f"{g['p_improvement']:.2f}"
        if g.get("p_improvement_ci"):
            p += f" [{g['p_improvement_ci'][0]:.2f}, {g['p_improvement_ci'][1]:.2f}]"
        span = "-" if t["min"] is None else f"{t['min']:.1f}-{t['max']:.1f}"
        rows.append([g["label"] or "all", str(t["n"]), _interval(t, "mean"), _interval(t, "iqm"),
                     "-" if t["median"] is None else f"{t['median']:.1f}", span, _interval(e, "mean"), p])  # fmt: skip
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(0 < g["train"]["n"] < MIN_MEMBERS_FOR_CI for g in groups):
        lines.append(f"(no interval for groups of fewer than {MIN_MEMBERS_FOR_CI} members: see min-max)")
    return "\n".join(lines)


def write(groups: Sequence[dict], out_dir: str) -> list[str]:
    """compare.csv, compare.json, learning_curves.png and aggregates.png in `out_dir`; returns their paths."""
    import csv
    import io

    from rlx.logging import write_json
    from rlx.plotting import aggregate_intervals, learning_curves
    from rlx.runfiles import atomic_open

    os.makedirs(out_dir, exist_ok=True)
    plain = [{k: v for k, v in g.items() if not k.startswith("_")} for g in groups]
    paths = [os.path.join(out_dir, n) for n in ("compare.csv", "compare.json", "learning_curves.png", "aggregates.png")]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["group", "run", "n", "mean", "mean_low", "mean_high", "iqm", "iqm_low", "iqm_high", "median",
                "min", "max", "eval_mean", "p_improvement"])  # fmt: skip
    for g in plain:
        t = g["train"]
        w.writerow([g["label"], g["run"], t["n"], t["mean"], *(t.get("mean_ci") or ["", ""]), t["iqm"],
                    *(t.get("iqm_ci") or ["", ""]), t["median"], t["min"], t["max"],
                    "" if g["eval"] is None else g["eval"]["mean"], g["p_improvement"]])  # fmt: skip
    with atomic_open(paths[0], "w", newline="") as f:
        f.write(buf.getvalue())
    write_json(paths[1], {"groups": plain})
    labels = [g["label"] or "all" for g in groups]
    learning_curves(paths[2], {label: g["_curve"] for label, g in zip(labels, groups)}, title="training episode return by group")
    aggregate_intervals(paths[3], labels, [g["train"] for g in groups], xlabel="final training return")
    return paths


def compare_command(args: Any) -> int:
    """`rlx compare RUN_DIR... [--by KEYS] [--out DIR]`."""
    import time

    by = [k for k in args.by.split(",") if k] if args.by is not None else None
    groups = compare(args.run_dirs, by)
    print(table(groups))
    out = args.out or os.path.join("runs", f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    paths = write(groups, out)
    print(f"wrote {', '.join(paths)}")
    return 0


__all__ = ["compare", "describe", "final_returns", "group_members", "swept_keys", "table", "write", "RunScores"]
