"""Why batching population members can be slower than running them one after another.

    python benchmarks/profile_population.py [--purejaxrl DIR] [--members 4] [--steps 100000]

On one XLA CPU device, M members of PPO on CartPole (rlx's `PPOConfig()` defaults, which
are PureJaxRL's settings) are compiled three or four ways and each program is timed
(best of 2 runs after compile) and counted (instructions in the optimised HLO by opcode):

  * rlx vmap: `jit(vmap(train))`, the members batched into one program;
  * rlx map: `jit(lax.map(train))`, one member after another (the CPU default);
  * rlx solo x M: one member's `jit(train)`, time multiplied by M (the lower bound of map);
  * PureJaxRL vmap: `jit(vmap(make_train(config)))` from an upstream checkout
    (`--purejaxrl DIR`, imported as `bench_purejaxrl.py` does; left out without one).

`--dump DIR` writes each optimised HLO text there for reading. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OPS = ("fusion", "gather", "scatter", "sort", "copy", "while", "conditional", "dot", "select", "transpose",
       "dynamic-slice", "dynamic-update-slice")  # fmt: skip


def opcode_counts(hlo: str) -> collections.Counter:
    """Instructions per opcode in an HLO module's text (every computation, fused ones
    included), from lines `%name = type opcode(...)`."""
    counts = collections.Counter()
    for m in re.finditer(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*.*?\s([a-z][a-z0-9\-]*)\(", hlo, re.M):
        counts[m.group(1)] += 1
    return counts


def top_fusion_counts(hlo: str) -> int:
    """Fusion instructions called from non-fused computations: the kernels XLA runs."""
    return len(re.findall(r"=\s*\S+\s+fusion\(", hlo))


def measure(name: str, jitted, args, dump: str | None, scale: float = 1.0) -> dict:
    import jax

    t = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - t
    times = []
    for _ in range(2):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t)
    hlo = compiled.as_text()
    if dump:
        os.makedirs(dump, exist_ok=True)
        with open(os.path.join(dump, re.sub(r"\W+", "_", name) + ".hlo.txt"), "w") as f:
            f.write(hlo)
    counts = opcode_counts(hlo)
    return dict(name=name, compile_s=compile_s, run_s=min(times) * scale, instructions=sum(counts.values()),
                kernels=top_fusion_counts(hlo), **{op: counts.get(op, 0) for op in OPS})  # fmt: skip


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--purejaxrl", default=os.environ.get("PUREJAXRL_DIR"))
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--dump", default=None)
    p.add_argument("--only", default=None, help="comma-separated subset of: vmap,map,solo,purejaxrl")
    args = p.parse_args(argv)
    os.environ["XLA_FLAGS"] = re.sub(r"--xla_force_host_platform_device_count=\S+", "",
                                     os.environ.get("XLA_FLAGS", ""))  # fmt: skip

    import jax

    from rlx import envs
    from rlx.agents import ppo
    from rlx.population import make_population
    from rlx.train import make_train

    only = set(args.only.split(",")) if args.only else {"vmap", "map", "solo", "purejaxrl"}
    M = args.members
    env, params = envs.make("gymnax/CartPole-v1")
    cfg = ppo.PPOConfig(total_steps=args.steps)
    agent = ppo.make_agent(env, cfg)
    train = make_train(agent, cfg)
    pop = make_population(cfg, seeds=M)
    rows = []
    if "vmap" in only:
        rows.append(measure("rlx vmap", jax.jit(jax.vmap(train, (0, 0, None))), (pop.keys, pop.cfg, params), args.dump))
    if "map" in only:
        mapped = jax.jit(lambda k, c, p: jax.lax.map(lambda kc: train(kc[0], kc[1], p), (k, c)))
        rows.append(measure("rlx map", mapped, (pop.keys, pop.cfg, params), args.dump))
    if "solo" in only:
        rows.append(measure(f"rlx solo x {M}", jax.jit(train), (pop.keys[0], jax.tree.map(lambda x: x[0], pop.cfg), params),
                            args.dump, scale=M))  # fmt: skip
    if "purejaxrl" in only and args.purejaxrl:
        sys.path.insert(0, HERE)
        from bench_purejaxrl import find_ppo, import_purejaxrl, purejaxrl_config

        path, reason = find_ppo(args.purejaxrl)
        if path is None:
            print(f"PureJaxRL left out: {reason}")
        else:
            pj = import_purejaxrl(path).make_train(purejaxrl_config(args.steps))
            keys = jax.random.split(jax.random.PRNGKey(0), M)
            rows.append(measure("PureJaxRL vmap", jax.jit(jax.vmap(pj)), (keys,), args.dump))
    steps = M * args.steps
    cols = ["compile_s", "run_s", "instructions", "kernels", *OPS]
    print(f"{M} members x {args.steps} CartPole steps on 1 CPU device, jax {jax.__version__}")
    print("| program | env-steps/s | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * (len(cols) + 1))
    for r in rows:
        cells = [f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        print(f"| {r['name']} | {steps / r['run_s']:,.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
