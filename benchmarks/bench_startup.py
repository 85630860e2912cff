"""Start-up of `rlx train`: the time from the command to the first compiled update, split
into Python's start with rlx's imports, the env (its suite's import included), the agent
and runner, `init` and the compile, from each run's `summary.json` ("timings"."startup");
then the heaviest packages on that path (`python -X importtime`), each marked by whether
the run needs it.

    python benchmarks/bench_startup.py [--env gymnax/CartPole-v1] [--repeats 3]

Each repeat is a fresh process (`rlx train ppo --seeds 8`, 2 updates, no progress bar).
Prints markdown tables: medians and ranges over the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

PHASES = ("python_imports_and_parsing_s", "env_s", "agent_and_runner_s", "init_s", "compile_s")
# Top-level packages worth watching, and why a PPO run on a gymnax env does or does not need them.
WATCHED = {
    "jax": "needed", "flax": "needed (networks)", "optax": "needed (optimiser)",
    "orbax.checkpoint": "needed (checkpoints)", "gymnax": "needed (the env suite)",
    "matplotlib": "gymnax imports matplotlib.colors", "matplotlib.pyplot": "deferred until a plot is drawn",
    "seaborn": "deferred (gymnax imports it for rendering only)", "scipy": "through jax.scipy or seaborn",
    "pandas": "through seaborn", "brax": "not needed", "optuna": "not needed", "mujoco": "not needed",
    "wandb": "not needed", "mlflow": "not needed", "tensorboardX": "not needed",
}


def train_command(env: str, out: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "rlx.cli", "train", "ppo", "--env", env, "--seeds", "8", "--num-envs", "4",
            "--num-steps", "128", "--total-steps", "4096", "--no-progress", "--eval-episodes", "0",
            "--out", out, *extra]  # fmt: skip


def one_run(env: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "run")
        t = time.perf_counter()
        proc = subprocess.run(train_command(env, out), capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode:
            raise SystemExit(f"rlx train failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        timings = json.load(open(os.path.join(out, "summary.json")))["timings"]
    return {**timings["startup"], "run_s": timings["run_s"], "process_s": wall}


def imports(env: str) -> dict[str, float]:
    """Cumulative import seconds of each watched package (its first import)."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-X", "importtime", *train_command(env, os.path.join(tmp, "run"))[1:]],
                              capture_output=True, text=True)  # fmt: skip
    found = {}
    for line in proc.stderr.splitlines():
        # Any depth: a package imported by another one (matplotlib by gymnax) counts too,
        # and its time is also inside its importer's.
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if m and m.group(2) in WATCHED and m.group(2) not in found:
            found[m.group(2)] = int(m.group(1)) / 1e6
    return found


def span(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", default="gymnax/CartPole-v1")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    load = os.getloadavg()[0]
    runs = [one_run(args.env) for _ in range(args.repeats)]
    print(f"rlx train ppo --env {args.env} --seeds 8 (2 updates), {args.repeats} fresh processes, "
          f"load {load:.2f} at the start\n")
    print("| phase | seconds, median (range) |\n|---|---|")
    for phase in PHASES:
        values = [r[phase] for r in runs if r[phase] is not None]
        if values:
            print(f"| {phase[:-2].replace('_', ' ')} | {span(values)} |")
    firsts = [sum(r[p] for p in PHASES if r[p] is not None) for r in runs]
    print(f"| **to the first update** | {span(firsts)} |")
    print(f"| 2 updates, evaluation off, plot, exit | {span([r['process_s'] - f for r, f in zip(runs, firsts)])} |")
    print(f"| whole process | {span([r['process_s'] for r in runs])} |\n")
    found = imports(args.env)
    print("| package (first import, under -X importtime) | seconds | on this path |\n|---|---|---|")
    for name, seconds in sorted(found.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {seconds:.2f} | {WATCHED[name]} |")
    absent = [n for n in WATCHED if n not in found]
    print(f"\nnot imported: {', '.join(absent) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
