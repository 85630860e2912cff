"""Reproduced figures: the experiment convention, discovery, `rlx reproduce`, the gallery.

An experiment is any module under `experiments/` (by convention
`experiments/<paper>/<figure>/run.py`) that defines, at top level:

- `META`: a dict with `name` (the `rlx reproduce` name), `paper`, `figure`, `claim`
  and `expected` (the paper's result in words). Optional, for the gallery table:
  `paper_value` (the paper's number), `headline` (the key of `run`'s result that is
  our number for it), `budget` (`{scale: "about 40 s on 2 CPU cores"}`);
- `SCALES` may add a `mid` scale (under about an hour on 2 CPU cores, sized to test the
  claim with paired seeds and intervals rather than to run);
- `SCALES`: `{"smoke": {...}, "cpu": {...}, "paper": {...}}`, the settings of each
  budget. smoke runs in CI in seconds, cpu in minutes on a laptop, paper is the
  published budget;
- `run(scale, out_dir) -> dict` of headline numbers, writing `<name>.png` and
  `<name>.csv` into `out_dir` (default `results/<name>`);

and ends with `if __name__ == "__main__": main(run, SCALES, __doc__)`. A result that
tests a claim also holds `interval` (`[low, high]`, the headline's 95% interval) and
`verdict` (`rlx.stats.verdict`'s word); the gallery shows both. Nothing has
to be registered: `discover()` finds every such module, so a new folder shows up in
`rlx reproduce --list`, in the smoke test over all experiments and in the gallery.
Every run through `main` or `rlx reproduce` also writes `<name>.json` beside the
figure: the scale, the result, the wall time and the package versions.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import json
import math
import os
import sys
import time
from typing import Any, Callable, Iterable

SCALE_NAMES = ("smoke", "cpu", "paper")
META_KEYS = ("name", "paper", "figure", "claim", "expected")


def main(run: Callable[[str, str | None], dict], scales: Iterable[str], doc: str | None = None) -> None:
    """The command line of `experiments/.../run.py`: `--scale`, `--out`."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--scale", default="smoke", choices=list(scales))
    parser.add_argument("--out", default=None, help="output directory (default: results/<name>)")
    args = parser.parse_args()
    meta = getattr(run, "__globals__", {}).get("META")
    if isinstance(meta, dict) and "name" in meta:
        out_dir = args.out or os.path.join("results", meta["name"])
        print(json.dumps(_timed_run(run, meta, args.scale, out_dir)["result"], indent=2, default=str))
    else:
        print(run(args.scale, args.out))


# ---------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Experiment:
    """One discovered experiment module. `error` is set (and the rest may be empty)
    when it could not be imported or breaks the convention."""

    name: str
    path: str  # relative to the repository root
    meta: dict
    scales: dict
    run: Callable | None
    error: str | None = None


def write_csv(path: str, rows: list[dict]) -> None:
    """Write `rows` to `path` as CSV, atomically: the columns are the union of the rows'
    keys in first-seen order (a missing cell is empty), floats to 6 significant digits."""
    import csv

    from rlx.runfiles import atomic_open

    keys = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def repo_root() -> str:
    """The folder holding `experiments/`: RLX_ROOT, else this checkout, else the cwd."""
    if os.environ.get("RLX_ROOT"):
        return os.path.abspath(os.environ["RLX_ROOT"])
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isdir(os.path.join(here, "experiments")):
        return here
    return os.getcwd()


def _looks_like_experiment(path: str) -> bool:
    """Top-level `META = ...`, `SCALES = ...` and `def run` (checked without importing)."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
    except (SyntaxError, UnicodeDecodeError, OSError):
        return False
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
    return {"META", "SCALES", "run"} <= names


def discover(root: str | None = None) -> list[Experiment]:
    """Every experiment module under `<root>/experiments`, sorted by name."""
    root = os.path.abspath(root or repo_root())
    base = os.path.join(root, "experiments")
    found = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        for fn in sorted(filenames):
            path = os.path.join(dirpath, fn)
            if fn.endswith(".py") and not fn.startswith("_") and _looks_like_experiment(path):
                found.append(_load(path, root))
    names = [e.name for e in found]
    for e in found:
        if names.count(e.name) > 1 and e.error is None:
            e.error = f"META['name'] = {e.name!r} is used by more than one experiment: names must be unique."
    return sorted(found, key=lambda e: e.name)


def _load(path: str, root: str) -> Experiment:
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    inner = os.path.relpath(path, os.path.join(root, "experiments")).replace(os.sep, "/")[: -len(".py")]
    fallback = inner[: -len("/run")] if inner.endswith("/run") else inner  # the name when META has none
    modname = "_rlx_experiments." + inner.replace("/", ".").replace("-", "_")
    if root not in sys.path:  # so an experiment can import `experiments.<paper>.common`
        sys.path.insert(0, root)
    try:
        module = sys.modules.get(modname)
        if module is None or getattr(module, "__file__", None) != path:
            spec = importlib.util.spec_from_file_location(modname, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[modname] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(modname, None)
                raise
    except BaseException as e:  # a broken experiment must not hide the others
        if isinstance(e, KeyboardInterrupt):
            raise
        return Experiment(fallback, rel, {}, {}, None, f"import failed: {type(e).__name__}: {e}")
    meta, scales, run = getattr(module, "META", None), getattr(module, "SCALES", None), getattr(module, "run", None)
    name = meta.get("name", fallback) if isinstance(meta, dict) else fallback
    problems = []
    if not isinstance(meta, dict):
        problems.append("META must be a dict")
    else:
        missing = [k for k in META_KEYS if not meta.get(k)]
        if missing:
            problems.append(f"META lacks {', '.join(missing)}")
    if not isinstance(scales, dict) or not set(SCALE_NAMES) <= set(scales):
        have = sorted(scales) if isinstance(scales, dict) else scales
        problems.append(f"SCALES must have the keys {', '.join(SCALE_NAMES)} (has {have})")
    if not callable(run):
        problems.append("run must be a function run(scale, out_dir)")
    error = "; ".join(problems) or None
    return Experiment(name, rel, meta if isinstance(meta, dict) else {}, scales if isinstance(scales, dict) else {},
                      run if callable(run) else None, error)  # fmt: skip


def find(name: str, experiments: list[Experiment] | None = None) -> Experiment:
    """The experiment called `name` (its META name, or its path without `.py`)."""
    experiments = discover() if experiments is None else experiments
    for e in experiments:
        if name in (e.name, e.path, e.path[: -len(".py")], os.path.dirname(e.path)):
            return e
    import difflib

    names = [e.name for e in experiments]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown experiment {name!r}.{hint} See `rlx reproduce --list` ({len(names)} experiments).")


# ---------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------


def run_experiment(exp: Experiment, scale: str, out_dir: str | None = None) -> dict:
    """Run one experiment at `scale`; returns the record also written to `<out>/<name>.json`."""
    if exp.error:
        raise ValueError(f"experiment {exp.name} ({exp.path}) cannot run: {exp.error}")
    if scale not in exp.scales:
        raise ValueError(f"scale = {scale!r} is invalid for {exp.name}: accepted values are {', '.join(exp.scales)}.")
    out_dir = out_dir or os.path.join("results", exp.name)
    return _timed_run(exp.run, exp.meta, scale, out_dir)


def _timed_run(run: Callable, meta: dict, scale: str, out_dir: str) -> dict:
    from rlx.logging import versions, write_json

    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    result = run(scale, out_dir)
    record = {
        "name": meta["name"],
        "scale": scale,
        "result": result,
        "seconds": round(time.perf_counter() - start, 2),
        "date": time.strftime("%Y-%m-%d"),
        "versions": versions(),
    }
    write_json(os.path.join(out_dir, f"{meta['name']}.json"), record)
    return record


def budget(exp: Experiment, scale: str) -> str:
    """The budget of one scale in words: META["budget"] if given, else its settings."""
    words = (exp.meta.get("budget") or {}).get(scale)
    settings = exp.scales.get(scale)
    text = ", ".join(f"{k}={_short(v)}" for k, v in settings.items()) if isinstance(settings, dict) else _short(settings)
    return f"{words} ({text})" if words else text


def _short(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 40 else s[:37] + "..."


def listing(experiments: list[Experiment]) -> str:
    """The text of `rlx reproduce --list`."""
    lines = [f"{len(experiments)} experiments (run one with `rlx reproduce NAME --scale smoke|cpu|paper`):", ""]
    for e in experiments:
        lines.append(f"{e.name}  [{e.path}]")
        if e.error:
            lines.append(f"  BROKEN    {e.error}")
            lines.append("")
            continue
        lines.append(f"  paper     {e.meta['paper']}")
        lines.append(f"  figure    {e.meta['figure']}")
        expected = e.meta["expected"]
        if "paper_value" in e.meta:
            expected = f"{e.meta['paper_value']} ({e.meta.get('headline', 'headline')}); {expected}"
        lines.append(f"  expected  {expected}")
        for scale in e.scales:
            lines.append(f"  {scale:<9} {budget(e, scale)}")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------
# The gallery
# ---------------------------------------------------------------------------------


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(float(x)) else None


def _fmt(x: Any) -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, dict):
        return "; ".join(f"{k}: {_fmt(v)}" for k, v in list(x.items())[:4]) + ("; ..." if len(x) > 4 else "")
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in x[:6]) + (", ..." if len(x) > 6 else "") + "]"
    return str(x)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def ours_and_gap(exp: Experiment, record: dict | None) -> tuple[str, str]:
    """Our number (the `headline` entry of the result, or its scalar entries) and the
    gap to `paper_value` when both are numbers."""
    if record is None:
        return "not run yet", ""
    result = record.get("result") or {}
    key = exp.meta.get("headline")
    if key is not None and isinstance(result, dict) and key in result:
        ours = result[key]
        paper, mine = _number(exp.meta.get("paper_value")), _number(ours)
        text = _fmt(ours)
        interval = result.get("interval")
        if isinstance(interval, (list, tuple)) and len(interval) == 2:
            text += f" [{_fmt(interval[0])}, {_fmt(interval[1])}]"
        if paper is not None and mine is not None:
            gap = mine - paper
            rel = f" ({gap / abs(paper):+.1%})" if paper else ""
            return text, f"{gap:+.4g}{rel}"
        return text, ""
    if isinstance(result, dict):
        scalars = {k: v for k, v in result.items() if isinstance(v, (bool, int, float, str))}
        return _fmt(scalars or result), ""
    return _fmt(result), ""


def verdict_of(record: dict | None) -> str:
    """The result's `verdict` (reproduced, not reproduced, contradicted, ...), or "—"."""
    result = (record or {}).get("result")
    v = result.get("verdict") if isinstance(result, dict) else None
    return v if isinstance(v, str) and v else "—"


GALLERY_FILES = "docs/gallery"  # published copies of each figure and record (results/ is not tracked)


def publish(experiments: list[Experiment], root: str | None = None, dest: str = GALLERY_FILES) -> list[str]:
    """Copy `results/<name>/<name>.{json,png}` of every experiment that has both into
    `dest`, so the gallery links to tracked files. Returns the names copied."""
    import shutil

    root = os.path.abspath(root or repo_root())
    dest = os.path.join(root, dest)
    copied = []
    for e in experiments:
        src = [os.path.join(root, "results", e.name, f"{e.name}.{x}") for x in ("json", "png")]
        if e.error is None and all(os.path.exists(p) for p in src):
            os.makedirs(dest, exist_ok=True)
            for p in src:
                shutil.copyfile(p, os.path.join(dest, os.path.basename(p)))
            copied.append(e.name)
    return copied


def gallery_markdown(experiments: list[Experiment], root: str | None = None, base: str = ".",
                     scale: str = "cpu", files: str = GALLERY_FILES) -> str:  # fmt: skip
    """The README gallery section: a table (paper, figure, the paper's number, ours,
    gap) and every figure, from the published `<files>/<name>.{json,png}` under `root`.

    Links are relative to `base`, the folder (under `root`) of the file it goes in:
    "." for README.md, "docs" for docs/gallery.md.
    """
    root = os.path.abspath(root or repo_root())

    def link(target: str) -> str:
        return os.path.relpath(os.path.join(root, target), os.path.join(root, base)).replace(os.sep, "/")

    rows, figures = [], []
    for e in experiments:
        if e.error:
            continue
        record = _read_record(os.path.join(root, files, f"{e.name}.json"))
        ours, gap = ours_and_gap(e, record)
        if record is not None and record.get("scale") != scale:
            ours += f" ({record.get('scale')} scale)"
        paper = e.meta.get("paper_value", e.meta["expected"])
        when = f"{record['scale']}, {record['seconds']:.0f} s, {record['date']}" if record else ""
        cite = e.meta["paper"].split(", ")[0]  # "Pires et al. 2025, <title>" -> "Pires et al. 2025"
        rows.append([f"[{e.name}]({link(os.path.dirname(e.path))})", f"{cite}: {e.meta['figure']}",
                     _fmt(paper), ours, gap or "—", verdict_of(record), when])  # fmt: skip
        png = f"{files}/{e.name}.png"
        if record is not None and os.path.exists(os.path.join(root, png)):
            figures.append(f"**{e.name}** ({e.meta['paper']}). {e.meta['claim']}\n\n![{e.name}]({link(png)})\n")
        else:
            figures.append(f"**{e.name}**: no figure yet; run `rlx reproduce {e.name} --scale {scale}`.\n")
    head = ["experiment", "paper: figure", "paper's number (or claim)", "ours", "gap", "verdict", "run"]
    lines = [
        "## Gallery",
        "",
        f"Every figure below is written by `rlx reproduce NAME --scale {scale}`; `rlx reproduce --list` shows "
        "every experiment with its budget at each scale. `python scripts/gallery.py` copies each run's figure "
        f"and record from `results/<name>/` to `{files}/` and regenerates this section; 'gap' is ours minus "
        "the paper's number where both are numbers; 'verdict' is the run's own test of the claim (a paired "
        "95% interval over seeds: reproduced, not reproduced or contradicted), where it has one.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    lines += [""] + figures
    return "\n".join(lines).rstrip() + "\n"


def write_gallery(path: str, root: str | None = None, scale: str = "cpu",
                  experiments: list[Experiment] | None = None) -> str:  # fmt: skip
    """Publish the figures and write the gallery section to `path` (links relative to it)."""
    root = os.path.abspath(root or repo_root())
    experiments = discover(root) if experiments is None else experiments
    publish(experiments, root)
    path = path if os.path.isabs(path) else os.path.join(root, path)
    text = gallery_markdown(experiments, root, os.path.relpath(os.path.dirname(path), root), scale)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def _read_record(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
