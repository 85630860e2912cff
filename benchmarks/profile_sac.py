"""Where SAC's update time goes on CPU: a per-kernel profile against the matmul peak.

Runs `--updates` SAC updates (gymnax Pendulum-v1, one env step and one gradient step per
update, batch 256, (64, 64) networks: the setting of `bench_sac.py`) in one `lax.scan`,
under `jax.profiler`, and attributes the trace's kernel time to the compiled program's
instructions. Each dot's FLOPs come from its shapes in the optimised HLO (a fusion counts
the dots inside it), so the report needs no FLOP estimate by hand:

- time per update, split into matmuls (dots and fusions holding one), other kernels by
  kind (elementwise fusions, sorts, gathers, copies, ...), and the gaps between kernels
  (the runtime's dispatch between thunks);
- the update's GFLOP/s and its fraction of the measured peak of a chain of
  `relu(x @ W)`, x `[256, 64]`, W `[64, 64]` (`bench_sac.matmul_peak`);
- the dots grouped by shape, with each group's GFLOP/s.

    .venv/bin/python benchmarks/profile_sac.py [--updates 2000] [--trace-updates 200] [--top 12]

Run it on one quiet core (`taskset -c 0`) to compare with `bench_sac.py --peak` there.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import math
import re
import tempfile
import time

import jax

_INSTR = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+?)(?:\{[^}]*\})? ([\w\-]+)\((.*)$")
_COMP = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$")


def _dims(shape: str) -> list[int]:
    """`f32[256,64]` -> [256, 64]; a tuple or token shape -> []."""
    m = re.match(r"^\w+\[([\d,]*)\]$", shape)
    return [int(d) for d in m.group(1).split(",") if d] if m else []


def parse_hlo(text: str) -> tuple[dict, dict]:
    """The optimised HLO text -> `(instructions, computations)`: `instructions[name] =
    (computation, opcode, shape, operands, rest)`, `computations[name] = [instruction names]`."""
    instrs, comps, current = {}, collections.defaultdict(list), None
    for line in text.splitlines():
        m = _INSTR.match(line)
        if m:
            name, shape, op, rest = m.groups()
            operands = re.findall(r"%([\w.\-]+)", rest.split(")", 1)[0])
            instrs[name] = (current, op, shape, operands, rest)
            comps[current].append(name)
            continue
        c = _COMP.match(line)
        if c:
            current = c.group(1)
    return instrs, comps


def dot_flops(instrs: dict, name: str) -> float:
    """2 · (output elements) · (contracted elements) of the dot `name`."""
    _, _, shape, operands, rest = instrs[name]
    lhs = _dims(instrs[operands[0]][2]) if operands and operands[0] in instrs else []
    m = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest)
    contracted = math.prod(lhs[int(d)] for d in m.group(1).split(",") if d) if m and lhs else 1
    return 2.0 * math.prod(_dims(shape)) * contracted


def kernel_flops(instrs: dict, comps: dict, name: str) -> tuple[float, list]:
    """FLOPs of the kernel `name` (a dot, or a fusion through the dots of its computation)
    and the dots it holds as `(dot name, output shape, flops)`."""
    _, op, shape, _, rest = instrs[name]
    if op == "dot":
        f = dot_flops(instrs, name)
        return f, [(name, shape, f)]
    called = re.search(r"calls=%?([\w.\-]+)", rest) if op == "fusion" else None
    if not called:
        return 0.0, []
    dots = [(d, instrs[d][2], dot_flops(instrs, d)) for d in comps.get(called.group(1), []) if instrs[d][1] == "dot"]
    return sum(f for _, _, f in dots), dots


def kernel_kind(instrs: dict, name: str, flops: float) -> str:
    """A coarse kind for the report: matmul, or the opcode (fusions by their fusion kind)."""
    if flops > 0:
        return "matmul (dot or fusion with a dot)"
    _, op, _, _, rest = instrs[name]
    if op == "fusion":
        kind = re.search(r"kind=(\w+)", rest)
        return f"fusion ({kind.group(1) if kind else '?'})"
    return op


def setting(updates: int):
    """The jitted run, its arguments and the config: `updates` SAC updates after the
    1000-step warm-up, as in `bench_sac.bench_rlx`."""
    from rlx import envs
    from rlx.agents import sac
    from rlx.train import run_updates

    env, params = envs.make("gymnax/Pendulum-v1")
    cfg = sac.SACConfig(total_steps=1000 + updates, learning_starts=1000, batch_size=256, utd=1.0,
                        hidden=(64, 64), critic_hidden=(64, 64))  # fmt: skip
    agent = sac.make_agent(env, cfg)
    state = jax.jit(agent.init)(jax.random.key(0), cfg, params)
    run = jax.jit(lambda s: run_updates(agent, s, cfg, params, updates)[0])
    return run, state


def untraced_ms(updates: int) -> float:
    """Milliseconds per update of a warm, untraced run of `updates` updates."""
    run, state = setting(updates)
    compiled = run.lower(state).compile()
    jax.block_until_ready(compiled(state))
    t = time.perf_counter()
    jax.block_until_ready(compiled(state))
    return (time.perf_counter() - t) / updates * 1e3


def profile(updates: int) -> dict:
    """Trace one warm run of `updates` updates (few: the profiler drops events past about
    a million); returns kernel times and the HLO facts."""
    run, state = setting(updates)
    compiled = run.lower(state).compile()
    jax.block_until_ready(compiled(state))  # warm: first-run allocations stay out of the trace
    instrs, comps = parse_hlo(compiled.as_text())
    with tempfile.TemporaryDirectory() as d:
        jax.profiler.start_trace(d)
        jax.block_until_ready(compiled(state))
        jax.profiler.stop_trace()
        (path,) = glob.glob(f"{d}/plugins/profile/*/*.trace.json.gz")
        events = json.load(gzip.open(path))["traceEvents"]
    kernels = [e for e in events if e.get("ph") == "X" and e["name"] in instrs]
    # The run's span on the device: first kernel start to last kernel end.
    wall_us = max(e["ts"] + e["dur"] for e in kernels) - min(e["ts"] for e in kernels)
    threads = len({e["tid"] for e in kernels})
    return dict(kernels=kernels, wall_us=wall_us, threads=threads, instrs=instrs, comps=comps)


def report(prof: dict, updates: int, untraced: float, peak: float, top: int) -> None:
    """Print the per-update breakdown and the dot groups; `untraced` is ms per update
    without the profiler, which slows every kernel."""
    instrs, comps = prof["instrs"], prof["comps"]
    by_kind, dot_groups = collections.Counter(), collections.defaultdict(lambda: [0.0, 0.0, 0])
    busy = flops = 0.0
    for e in prof["kernels"]:
        f, dots = kernel_flops(instrs, comps, e["name"])
        by_kind[kernel_kind(instrs, e["name"], f)] += e["dur"]
        busy += e["dur"]
        flops += f
        for _, shape, df in dots:  # a fusion's time goes to its dots by their FLOP share
            g = dot_groups[shape]
            g[0] += e["dur"] * df / f
            g[1] += df
            g[2] += 1
    per = lambda us: us / updates / 1e3  # noqa: E731  (microseconds in all -> ms per update)
    wall = prof["wall_us"]
    gflops = flops / updates / (untraced * 1e-3) / 1e9
    print(f"SAC update (Pendulum, batch 256, (64, 64)), {updates} updates, {jax.default_backend()}, "
          f"kernels on {prof['threads']} thread(s)")
    print(f"untraced {untraced:.3f} ms per update, {flops / updates / 1e6:.1f} MFLOP per update in dots: "
          f"{gflops:.1f} GFLOP/s = {gflops / peak:.0%} of the {peak:.1f} GFLOP/s relu(x @ W) chain peak")
    print(f"traced {per(wall):.3f} ms per update (the profiler's own cost included); shares of the traced time:\n")  # fmt: skip
    print("| where | ms per update | share |\n|---|---|---|")
    for kind, us in by_kind.most_common():
        print(f"| {kind} | {per(us):.3f} | {us / wall:.0%} |")
    print(f"| gaps between kernels (dispatch) | {per(wall - busy):.3f} | {(wall - busy) / wall:.0%} |\n")
    print(f"| dot output shape | dots per update | MFLOP per update | ms per update | GFLOP/s |\n|---|---|---|---|---|")
    for shape, (us, f, n) in sorted(dot_groups.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"| {shape} | {n / updates:.1f} | {f / updates / 1e6:.2f} | {per(us):.3f} | {f / (us * 1e-6) / 1e9:.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--updates", type=int, default=2000, help="updates in the untraced timing")
    p.add_argument("--trace-updates", type=int, default=200, help="updates in the traced run")
    p.add_argument("--top", type=int, default=12, help="dot shape groups to list")
    args = p.parse_args()
    from bench_sac import matmul_peak

    # The update first: run after the peak's 20,000-step chain, the same update took 0.80
    # ms instead of 0.53 ms in the same process (measured twice, reason not found).
    untraced = untraced_ms(args.updates)
    prof = profile(args.trace_updates)
    report(prof, args.trace_updates, untraced, matmul_peak(), args.top)


if __name__ == "__main__":
    main()
