"""PPO on CartPole: rlx against an upstream PureJaxRL checkout, in the same run.

    python benchmarks/bench_purejaxrl.py --purejaxrl DIR [--repeats 3] [--steps 500000]
                                         [--settings 1x1,8x1,8x2]

DIR is a PureJaxRL checkout (github.com/luchris429/purejaxrl; DIR/purejaxrl/ppo.py, or
DIR/ppo.py itself). Its code is imported from there, never copied here. Without a
checkout (no --purejaxrl, an empty one, or a folder that is not PureJaxRL) the script
prints one line, `skipped: <reason>`, and exits 0. `make bench PUREJAXRL=DIR` (or
`PUREJAXRL_DIR=DIR make bench`) passes it.

Both systems run the same PPO setting: rlx's `PPOConfig()` defaults, which are
PureJaxRL's CartPole settings (4 envs x 128 steps, 5e5 env steps per seed, 4 epochs x 4
minibatches, lr 2.5e-4 annealed, clip 0.2, GAE 0.95, entropy 0.01, grad norm 0.5); the
PureJaxRL config dict is built from that config's fields. A setting `SxD` is S seeds on
D XLA CPU devices (`rlx.use_every_cpu_core(D)`): rlx runs `bench_ppo.rlx_ppo` (a
`Runner` run in one chunk, the population sharded over the devices); PureJaxRL runs as
its README shows, `jax.jit(make_train(config))` for one seed and `jax.jit(jax.vmap(train))`
over S keys for several, and on D > 1 devices those keys are placed with a
`NamedSharding` over a 1-D mesh of the devices (hand-sharded: PureJaxRL has no sharding
of its own). One seed is not split over devices by either system, so there is no 1x2.

Every repeat runs in a fresh process, so "process s" is the wall time of a whole run
(Python start, imports, jax start, compile, run), and compiles are never reused. Order:
for each repeat, for each setting, rlx (its default population mode, "auto", which is
vmap), rlx with `population_mode="map"` (its bitwise-solo mode; settings with several
seeds, `--no-map` leaves it out), for several seeds the whole `rlx train ppo` command as
a user runs it ("rlx train (CLI)": 20 chunks with the CSV and a verified checkpoint after
each, the final 16-episode evaluation and the plot), then PureJaxRL. Reported per row: the median and
min-max over repeats of env-steps/s (run only, compile excluded), compile s (rlx:
compile + init, as `Runner` times them; PureJaxRL: lower + compile), whole-process s,
and the final return (mean episode return over the last 5% of updates, over seeds), so
that a broken run shows. Env steps are counted as seeds x total steps for both.

Adaptations made here, at import, to run the upstream code unchanged on this
environment (the checkout's files are not edited):
  * `wrappers.py` imports `navix` at the top for its NavixGymnaxWrapper, which CartPole
    does not use; when navix is not installed an empty stand-in module is registered.
  * gymnax >= 1.0 `step` returns six values (terminated, truncated) and PureJaxRL's
    wrappers unpack the old five ("too many values to unpack (expected 5)"); the
    `gymnax` name inside PureJaxRL's ppo module is replaced by a namespace whose `make`
    wraps the env in gymnax's own `LegacyStepAPIWrapper` (done = terminated or truncated).

Prints a markdown table and writes benchmarks/results/purejaxrl_cartpole.json (--json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
ROW_PREFIX = "BENCH_ROW "
THRESHOLD = 475
# rlx's rows: its default population mode ("auto", vmap) and, for several seeds, map.
RLX_MODES = {"rlx": "auto", "rlx-map": "map"}
SYSTEM_NAMES = {"rlx": "rlx", "rlx-map": "rlx (map)", "rlx-cli": "rlx train (CLI)", "purejaxrl": "PureJaxRL"}


# -- the checkout ------------------------------------------------------------------------
def find_ppo(path: str | None) -> tuple[str | None, str]:
    """`(path of PureJaxRL's ppo.py, "")`, or `(None, one-line reason)`."""
    if not path:
        return None, "no PureJaxRL checkout given (pass --purejaxrl DIR, or PUREJAXRL_DIR=DIR / make bench PUREJAXRL=DIR)"
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        return None, f"PureJaxRL checkout {path} does not exist"
    for candidate in (os.path.join(path, "purejaxrl", "ppo.py"), os.path.join(path, "ppo.py")):
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8", errors="replace") as f:
                text = f.read()
            if "def make_train" in text and os.path.isfile(os.path.join(os.path.dirname(candidate), "wrappers.py")):
                return candidate, ""
            return None, f"{path} is not a PureJaxRL checkout ({candidate} has no make_train, or no wrappers.py beside it)"
    return None, f"{path} is not a PureJaxRL checkout (no purejaxrl/ppo.py in it)"


def describe_checkout(ppo_path: str) -> dict:
    with open(ppo_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    out = {"ppo_py": ppo_path, "ppo_py_sha256": digest}
    try:
        commit = subprocess.run(["git", "-C", os.path.dirname(ppo_path), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10)  # fmt: skip
        if commit.returncode == 0:
            out["commit"] = commit.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return out


# -- one repeat, in its own process --------------------------------------------------------
def _devices_env(devices: int) -> None:
    """Expose exactly `devices` XLA CPU devices in this process (before jax starts),
    replacing a device count inherited from the parent (pytest's conftest sets 8)."""
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", "")).strip()
    os.environ["XLA_FLAGS"] = flags
    import rlx

    rlx.use_every_cpu_core(devices)


def child_rlx(seeds: int, devices: int, steps: int, population_mode: str = "auto") -> dict:
    sys.path.insert(0, HERE)
    from bench_ppo import rlx_ppo  # noqa: E402  (its use_every_cpu_core keeps our count)

    from rlx.agents import ppo

    r = rlx_ppo("gymnax/CartPole-v1", ppo.PPOConfig(total_steps=steps), seeds, THRESHOLD, population_mode=population_mode)
    m = re.search(r"(\d+) device", r["setting"])
    r["devices_used"] = int(m.group(1)) if m else None
    return r


def purejaxrl_config(steps: int) -> dict:
    """PureJaxRL's CartPole config, from rlx's PPOConfig defaults (the same setting)."""
    from rlx.agents import ppo

    c = ppo.PPOConfig(total_steps=steps)
    return {
        "LR": c.lr, "NUM_ENVS": c.num_envs, "NUM_STEPS": c.num_steps, "TOTAL_TIMESTEPS": float(c.total_steps),
        "UPDATE_EPOCHS": c.update_epochs, "NUM_MINIBATCHES": c.num_minibatches, "GAMMA": c.gamma,
        "GAE_LAMBDA": c.gae_lambda, "CLIP_EPS": c.clip_eps, "ENT_COEF": c.ent_coef, "VF_COEF": c.vf_coef,
        "MAX_GRAD_NORM": c.max_grad_norm, "ACTIVATION": c.activation, "ENV_NAME": "CartPole-v1",
        "ANNEAL_LR": c.anneal_lr, "DEBUG": False,
    }  # fmt: skip


def import_purejaxrl(ppo_path: str):
    """PureJaxRL's ppo module, imported from the checkout with the adaptations above."""
    import importlib.util
    import types

    import gymnax
    from gymnax.wrappers.compat import LegacyStepAPIWrapper

    try:
        import navix  # noqa: F401
    except ImportError:
        sys.modules["navix"] = types.ModuleType("navix")  # only NavixGymnaxWrapper uses it
    sys.path.insert(0, os.path.dirname(ppo_path))  # for its `from wrappers import ...`
    spec = importlib.util.spec_from_file_location("purejaxrl_ppo", ppo_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def make(name, **kwargs):
        env, params = gymnax.make(name, **kwargs)
        return LegacyStepAPIWrapper(env), params  # gymnax 1.x six-value step -> old five

    module.gymnax = types.SimpleNamespace(make=make)
    return module


def child_purejaxrl(seeds: int, devices: int, steps: int, ppo_path: str) -> dict:
    sys.path.insert(0, HERE)
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from timing import compile_and_run

    module = import_purejaxrl(ppo_path)
    config = purejaxrl_config(steps)
    train = module.make_train(config)
    if seeds == 1:
        jitted, keys = jax.jit(train), jax.random.PRNGKey(0)  # as in ppo.py's __main__
        how = "jit(train)"
    else:
        jitted, keys = jax.jit(jax.vmap(train)), jax.random.split(jax.random.PRNGKey(0), seeds)
        how = "jit(vmap(train))"
        if devices > 1:
            mesh = Mesh(np.asarray(jax.devices()[:devices]), ("seed",))
            keys = jax.device_put(keys, NamedSharding(mesh, PartitionSpec("seed")))
            how += f" over keys sharded on a {devices}-device mesh"
    compile_s, run_s, out = compile_and_run(jitted, keys)
    returns = out["metrics"]["returned_episode_returns"]
    used = len(returns.sharding.device_set)
    returns, done = np.asarray(returns), np.asarray(out["metrics"]["returned_episode"])
    if seeds == 1:
        returns, done = returns[None], done[None]
    tail = max(1, returns.shape[1] // 20)  # last 5% of updates, as rlx_ppo
    final = float(np.mean([r[d].mean() for r, d in zip(returns[:, -tail:], done[:, -tail:])]))
    total = seeds * steps
    return dict(system="PureJaxRL", setting=f"CartPole-v1, {seeds} seed(s), {devices} device(s)", compile_s=compile_s,
                run_s=run_s, steps=total, sps=total / run_s, sps_incl=total / (run_s + compile_s), final_return=final,
                devices_used=used, how=how)  # fmt: skip


def child_main(args) -> None:
    _devices_env(args.devices)
    if args.child in RLX_MODES:
        r = child_rlx(args.seeds, args.devices, args.steps, RLX_MODES[args.child])
    else:
        ppo_path, reason = find_ppo(args.purejaxrl)
        if ppo_path is None:
            raise SystemExit(reason)
        r = child_purejaxrl(args.seeds, args.devices, args.steps, ppo_path)
    import jax

    r["jax"] = jax.__version__
    print(ROW_PREFIX + json.dumps(r), flush=True)


# -- the parent: fresh processes, alternating ---------------------------------------------
def run_cli(seeds: int, devices: int, steps: int, timeout: float) -> dict:
    """The whole `rlx train ppo` process at the same setting, as a user runs it: its 20
    chunks, CSV and checkpoints after each, the final 16-episode evaluation and the plot.
    Steps/s, compile (+ init) and the final return come from the run's summary.json."""
    import tempfile

    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", "")).strip()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "run")
        cmd = [sys.executable, "-m", "rlx.cli", "train", "ppo", "--env", "gymnax/CartPole-v1", "--seeds", str(seeds),
               "--devices", str(devices), "--total-steps", str(steps), "--no-progress", "--out", out]  # fmt: skip
        t = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "XLA_FLAGS": flags})
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        process_s = time.perf_counter() - t
        if proc.returncode or not os.path.exists(os.path.join(out, "summary.json")):
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            return {"error": f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}"[:300], "process_s": process_s}
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
    timings, total = summary["timings"], seeds * steps
    m = re.search(r"on (\d+) device", proc.stdout)
    final = summary["final_train_return"]
    return dict(compile_s=timings["compile_s"] + timings["init_s"], run_s=timings["run_s"], steps=total,
                sps=total / timings["run_s"], final_return=sum(final) / len(final), process_s=process_s,
                devices_used=int(m.group(1)) if m else None)  # fmt: skip


def run_one(system: str, seeds: int, devices: int, steps: int, purejaxrl: str, timeout: float) -> dict:
    if system == "rlx-cli":
        return run_cli(seeds, devices, steps, timeout)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", system, "--seeds", str(seeds),
           "--devices", str(devices), "--steps", str(steps), "--purejaxrl", purejaxrl]  # fmt: skip
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    process_s = time.perf_counter() - t
    rows = [ln[len(ROW_PREFIX):] for ln in proc.stdout.splitlines() if ln.startswith(ROW_PREFIX)]
    if proc.returncode or not rows:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return {"error": f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}"[:300], "process_s": process_s}
    r = json.loads(rows[-1])
    r["process_s"] = process_s
    return r


def spread(values: list[float]) -> dict | None:
    if not values:
        return None
    s = sorted(values)
    n = len(s)
    med = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
    return {"median": med, "min": s[0], "max": s[-1]}


def summarise(system: str, seeds: int, devices: int, repeats: list[dict]) -> dict:
    ok = [r for r in repeats if "error" not in r]
    label = "1 device" if devices == 1 else f"{devices} devices"
    if system == "PureJaxRL":
        label += " (as shipped)" if devices == 1 else " (hand-sharded)"
    out = {"system": system, "setting": f"CartPole-v1, {seeds} seed(s), {label}", "seeds": seeds,
           "devices": devices, "repeats": len(repeats), "ok": len(ok), "raw": repeats}  # fmt: skip
    for key in ("sps", "compile_s", "process_s", "run_s", "final_return"):
        out[key] = spread([r[key] for r in ok])
    used = sorted({r.get("devices_used") for r in ok})
    out["devices_used"] = used
    errors = [r["error"] for r in repeats if "error" in r]
    if errors:
        out["errors"] = errors
    return out


def _fmt(s: dict | None, spec: str) -> str:
    if s is None:
        return "–"
    if s["min"] == s["max"]:
        return format(s["median"], spec)
    return f"{format(s['median'], spec)} ({format(s['min'], spec)}–{format(s['max'], spec)})"


def table(rows: list[dict]) -> str:
    lines = ["| system | setting | ok / repeats | env-steps/s | compile s | process s | final return |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        note = ""
        if r.get("errors"):
            note = f" (failed: {r['errors'][0][:90]})"
        if r["devices_used"] and r["devices_used"] != [r["devices"]]:
            note += f" (ran on {r['devices_used']} device(s))"
        lines.append(f"| {r['system']} | {r['setting']}{note} | {r['ok']}/{r['repeats']} | {_fmt(r['sps'], ',.0f')} "
                     f"| {_fmt(r['compile_s'], '.1f')} | {_fmt(r['process_s'], '.1f')} | {_fmt(r['final_return'], '.1f')} |")  # fmt: skip
    return "\n".join(lines)


def parse_settings(text: str | None) -> list[tuple[int, int]]:
    if text is None:
        from rlx import usable_cpu_cores

        out = [(1, 1), (8, 1)]
        wide = math.gcd(8, usable_cpu_cores())
        return out + [(8, wide)] if wide > 1 else out
    out = []
    for part in text.split(","):
        seeds, _, devices = part.strip().partition("x")
        out.append((int(seeds), int(devices or 1)))
    for seeds, devices in out:
        if seeds % devices:
            raise SystemExit(f"--settings {seeds}x{devices}: the seeds must split evenly over the devices")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--purejaxrl", default=os.environ.get("PUREJAXRL_DIR", ""),
                   help="PureJaxRL checkout (default: $PUREJAXRL_DIR)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per system and setting")
    p.add_argument("--steps", type=int, default=500_000, help="env steps per seed")
    p.add_argument("--settings", default=None, help="SEEDSxDEVICES, comma-separated (default 1x1,8x1,8x<cores>)")
    p.add_argument("--json", default=os.path.join(RESULTS, "purejaxrl_cartpole.json"))
    p.add_argument("--timeout", type=float, default=1800, help="seconds per process")
    p.add_argument("--no-map", action="store_true", help="leave out the rows of rlx's map population mode")
    p.add_argument("--child", choices=(*RLX_MODES, "purejaxrl"), help=argparse.SUPPRESS)
    p.add_argument("--seeds", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child_main(args)
        return 0

    ppo_path, reason = find_ppo(args.purejaxrl)
    if ppo_path is None:
        print(f"skipped: {reason}")
        return 0
    settings = parse_settings(args.settings)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    raw: dict[tuple[str, int, int], list[dict]] = {}

    def systems(seeds: int) -> tuple[str, ...]:
        if seeds == 1:
            return ("rlx", "purejaxrl")
        return ("rlx", "rlx-cli", "purejaxrl") if args.no_map else ("rlx", "rlx-map", "rlx-cli", "purejaxrl")

    for rep in range(args.repeats):
        for seeds, devices in settings:
            for system in systems(seeds):  # rlx, [rlx map,] PureJaxRL, rlx, ...
                r = run_one(system, seeds, devices, args.steps, args.purejaxrl, args.timeout)
                r["repeat"] = rep
                raw.setdefault((system, seeds, devices), []).append(r)
                shown = r.get("error") or f"{r['sps']:,.0f} steps/s, process {r['process_s']:.1f} s"
                print(f"# repeat {rep + 1}/{args.repeats}: {system} {seeds}x{devices}: {shown}", file=sys.stderr, flush=True)
    rows = [summarise(SYSTEM_NAMES[system], seeds, devices, raw[(system, seeds, devices)])
            for seeds, devices in settings for system in systems(seeds)]  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    meta = {"purejaxrl": describe_checkout(ppo_path), "steps_per_seed": args.steps, "repeats": args.repeats,
            "order": "per repeat, per setting: rlx (its default mode, vmap), rlx (map) and the whole rlx train "
                     "CLI process for several seeds, then PureJaxRL, each in a fresh process",
            "load_average_before": load_before,
            "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None}  # fmt: skip
    with open(args.json, "w") as f:
        json.dump({"rows": rows, **meta}, f, indent=2)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
