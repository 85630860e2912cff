"""Benchmark: stock-augmented DVI over a population of random MDPs in one jit(vmap).

    .venv/bin/python benchmarks/bench_ddp.py [--quick]

Headline: 256 MDPs (S=5, A=3, 2 reward outcomes), H=10, 41 stocks, 21 atoms. Prints a
markdown table: compile time (`.lower().compile()`), run time excluding compile (best
of 3), and run time including compile, then scaling in S, stock-grid size and atoms.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from rlx.agents.ddp import objectives as O
from rlx.agents.ddp import tabular as T
from rlx.envs.tabular import random_mdp


def bench(num_mdps=256, S=5, A=3, H=10, J=41, M=21, K=2, repeats=3) -> dict:
    mdps = jax.vmap(lambda k: random_mdp(k, S, A, K, -1, 1))(jax.random.split(jax.random.key(0), num_mdps))
    lo, hi = T.return_bounds(mdps, 0.9, H)
    grid = T.make_grid(lo, hi, M, -hi, -lo, J)
    obj = O.cvar(0.25)
    T.validate(mdps, grid, 0.9, H, obj)

    def solve(m):
        res = T.dvi(m, obj, grid, 0.9, horizon=H)
        return T.objective_value(m, res.q, obj, grid)[0], res.policy

    fn = jax.jit(jax.vmap(solve))
    t0 = time.perf_counter()
    compiled = fn.lower(mdps).compile()
    t_compile = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(mdps))
        times.append(time.perf_counter() - t0)
    run = min(times)
    return dict(mdps=num_mdps, S=S, A=A, H=H, stocks=J, atoms=M, compile_s=t_compile, run_s=run,
                total_s=t_compile + run, backups_per_s=num_mdps * H / run)


def table(rows) -> str:
    head = "| MDPs | S | A | H | stocks | atoms | compile (s) | run excl. compile (s) | run incl. compile (s) | MDP-backups/s |"
    sep = "|" + "---|" * 10
    lines = [head, sep]
    for r in rows:
        lines.append(f"| {r['mdps']} | {r['S']} | {r['A']} | {r['H']} | {r['stocks']} | {r['atoms']} | "
                     f"{r['compile_s']:.2f} | {r['run_s']:.3f} | {r['total_s']:.2f} | {r['backups_per_s']:.0f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="headline row only")
    args = parser.parse_args()
    rows = [bench()]
    print(f"jax {jax.__version__}, devices {jax.devices()}\n")
    print("Headline (target <= 1 s excluding compile):\n")
    print(table(rows))
    if args.quick:
        return
    scaling = [bench(S=s) for s in (10, 20)] + [bench(J=j) for j in (21, 81)] + [bench(M=m) for m in (11, 51)]
    print("\nScaling (one factor at a time from the headline setting):\n")
    print(table(scaling))


if __name__ == "__main__":
    main()
