"""How PPO's cost grows with the population and with the envs per member, rlx beside PureJaxRL.

    python benchmarks/bench_scaling.py [--purejaxrl DIR] [--members 1,4,16,64,256]
                                       [--envs 4,64,512,4096] [--updates 16] [--devices 1]

CartPole, rlx's `PPOConfig()` defaults (PureJaxRL's settings: 128 steps per env and update,
4 epochs x 4 minibatches) except for the axis being varied. Two curves per framework:
members 1..256 at 4 envs each, and envs per member 4..4096 for one member. Every point
trains `--updates` updates per member, so the work per member is fixed by the point.

rlx runs `jit(vmap(make_train))` (its default population mode); PureJaxRL runs
`jit(vmap(make_train(config)))` from an upstream checkout (`--purejaxrl DIR`, imported as
`bench_purejaxrl.py` does; rlx alone without one). Both run in this process, alternating
per point, on `--devices` XLA CPU devices (keys sharded over a 1-D mesh when more than one).
Each point: compile once, run twice, keep the faster run. Memory is the compiled program's
own estimate (`memory_analysis()`: arguments + outputs + temporaries, per device).

Prints a markdown table and writes benchmarks/results/scaling.json and docs/figures/scaling.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _program_bytes(compiled) -> float | None:
    try:
        m = compiled.memory_analysis()
        return float(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)
    except Exception:  # not every backend reports it
        return None


def _time(jitted, args) -> tuple[float, float, float | None]:
    import jax

    t = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - t
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t)
    return compile_s, best, _program_bytes(compiled)


def _shard(x, devices: int):
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    if devices == 1:
        return x
    mesh = Mesh(np.asarray(jax.devices()[:devices]), ("pop",))
    return jax.device_put(x, NamedSharding(mesh, PartitionSpec("pop")))


def rlx_point(members: int, num_envs: int, updates: int, devices: int) -> dict:
    import jax

    from rlx import envs
    from rlx.agents import ppo
    from rlx.population import make_population
    from rlx.train import make_train

    env, params = envs.make("gymnax/CartPole-v1")
    cfg = ppo.PPOConfig(num_envs=num_envs, total_steps=num_envs * 128 * updates)
    agent = ppo.make_agent(env, cfg)
    pop = make_population(cfg, seeds=members)
    fn = jax.jit(jax.vmap(make_train(agent, cfg), (0, 0, None)))
    return dict(zip(("compile_s", "run_s", "bytes"), _time(fn, (_shard(pop.keys, devices), _shard(pop.cfg, devices), params))))


def purejaxrl_point(module, members: int, num_envs: int, updates: int, devices: int) -> dict:
    import jax

    from bench_purejaxrl import purejaxrl_config

    config = dict(purejaxrl_config(num_envs * 128 * updates), NUM_ENVS=num_envs)
    fn = jax.jit(jax.vmap(module.make_train(config)))
    keys = _shard(jax.random.split(jax.random.PRNGKey(0), members), devices)
    return dict(zip(("compile_s", "run_s", "bytes"), _time(fn, (keys,))))


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlx.plotting import save_figure

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for col, (axis, label) in enumerate((("members", "members (4 envs each)"), ("envs", "envs per member (1 member)"))):
        for system in sorted({r["system"] for r in rows}):
            pts = sorted((r[axis], r) for r in rows if r["axis"] == axis and r["system"] == system)
            xs = [x for x, _ in pts]
            axes[0, col].plot(xs, [r["sps"] for _, r in pts], "o-", label=system)
            if all(r["bytes"] for _, r in pts):
                axes[1, col].plot(xs, [r["bytes"] / 2**20 for _, r in pts], "o-", label=system)
        for row, ylabel in ((0, "env-steps/s (run, compile excluded)"), (1, "program memory per device (MiB)")):
            ax = axes[row, col]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
    fig.suptitle("PPO CartPole on CPU: throughput and memory against population size and envs per member")
    save_figure(fig, path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--purejaxrl", default=os.environ.get("PUREJAXRL_DIR"))
    p.add_argument("--members", default="1,4,16,64,256")
    p.add_argument("--envs", default="4,64,512,4096")
    p.add_argument("--updates", type=int, default=16)
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--json", default=os.path.join(HERE, "results", "scaling.json"))
    p.add_argument("--plot", default=os.path.join(ROOT, "docs", "figures", "scaling.png"))
    args = p.parse_args(argv)
    os.environ["XLA_FLAGS"] = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", ""))
    import rlx

    rlx.use_every_cpu_core(args.devices)
    sys.path.insert(0, HERE)
    import jax

    module = None
    if args.purejaxrl:
        from bench_purejaxrl import find_ppo, import_purejaxrl

        path, reason = find_ppo(args.purejaxrl)
        if path is None:
            print(f"PureJaxRL left out: {reason}")
        else:
            module = import_purejaxrl(path)
    points = [("members", m, 4) for m in map(int, args.members.split(","))]
    points += [("envs", 1, e) for e in map(int, args.envs.split(",")) if e != 4]  # (1, 4) is on both curves
    load_before = os.getloadavg()
    rows = []
    for axis, members, num_envs in points:
        if members % args.devices:
            continue
        systems = [("rlx", lambda: rlx_point(members, num_envs, args.updates, args.devices))]
        if module is not None:
            systems.append(("PureJaxRL", lambda: purejaxrl_point(module, members, num_envs, args.updates, args.devices)))
        for system, run in systems:
            r = dict(system=system, axis=axis, members=members, envs=num_envs, **run())
            r["env_steps"] = members * num_envs * 128 * args.updates
            r["sps"] = r["env_steps"] / r["run_s"]
            rows.append(r)
            if axis == "members" and members == 1:
                rows.append(dict(r, axis="envs"))
            print(f"# {system} {members} member(s) x {num_envs} envs: {r['sps']:,.0f} env-steps/s, "
                  f"compile {r['compile_s']:.1f} s", file=sys.stderr, flush=True)  # fmt: skip
    meta = dict(updates=args.updates, devices=args.devices, jax=jax.__version__, date=time.strftime("%Y-%m-%d"),
                load_before=load_before, load_after=os.getloadavg())  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(dict(rows=rows, **meta), f, indent=2)
    plot(rows, args.plot)
    print(f"PPO CartPole, {args.updates} updates per member, {args.devices} CPU device(s), jax {jax.__version__}, "
          f"{meta['date']}, load {load_before[0]:.2f} -> {meta['load_after'][0]:.2f}")  # fmt: skip
    print("| system | members | envs per member | env-steps/s | compile s | run s | program MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["axis"] == "envs" and r["envs"] == 4:
            continue  # printed once, on the members curve
        mib = f"{r['bytes'] / 2**20:.1f}" if r["bytes"] else "–"
        print(f"| {r['system']} | {r['members']} | {r['envs']} | {r['sps']:,.0f} | {r['compile_s']:.1f} | "
              f"{r['run_s']:.2f} | {mib} |")  # fmt: skip


if __name__ == "__main__":
    main()
