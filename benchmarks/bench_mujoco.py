"""Benchmark: env-alone throughput of the mujoco/ tasks (MJX) next to gymnasium's MuJoCo.

    .venv/bin/python benchmarks/bench_mujoco.py [--tasks Hopper-v5,Ant-v5] [--envs 1,64,1024] [--steps 100]

Random actions, no policy. Ours: `jit(scan(vmap(env.step)))` over `--steps` steps for each
batch size (auto-reset included), compile time (`.lower().compile()`) apart from run time
(best of 2). gymnasium: `gymnasium.make_vec(..., vectorization_mode="sync")`, one Python
process stepping MuJoCo C (float64) env by env, timed over the same number of steps
(capped at 10,000 env-steps for a batch). The same script runs unchanged on a GPU: JAX
picks the accelerator, gymnasium stays on the CPU. Prints a markdown table in env-steps/s.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from timing import env_alone, throughput_table


def bench_gymnasium(name: str, num_envs: int, steps: int) -> dict:
    import gymnasium

    vec = gymnasium.make_vec(name, num_envs=num_envs, vectorization_mode="sync")
    vec.reset(seed=0)
    vec.action_space.seed(0)
    steps = max(1, min(steps, 10_000 // num_envs))
    start = time.perf_counter()
    for _ in range(steps):
        vec.step(vec.action_space.sample())
    seconds = time.perf_counter() - start
    vec.close()
    return {"system": "gymnasium sync (MuJoCo C, CPU)", "envs": num_envs, "compile_s": 0.0,
            "steps_per_s": num_envs * steps / seconds}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="Hopper-v5", help="comma-separated gymnasium v5 ids")
    parser.add_argument("--envs", default="1,64,1024", help="comma-separated batch sizes")
    parser.add_argument("--steps", type=int, default=100, help="steps per env in the scan")
    parser.add_argument("--no-gymnasium", action="store_true", help="our envs only")
    args = parser.parse_args()
    sizes = [int(n) for n in args.envs.split(",")]
    print(f"jax {jax.__version__} on {jax.default_backend()}: {[d.device_kind for d in jax.devices()]}")
    for name in args.tasks.split(","):
        rows = []
        for n in sizes:
            rows.append(env_alone(f"mujoco/{name}", n, args.steps, f"rlx MJX ({jax.default_backend()})"))
            if not args.no_gymnasium:
                rows.append(bench_gymnasium(name, n, args.steps))
        print(throughput_table(name, rows), flush=True)


if __name__ == "__main__":
    jnp.zeros(())  # start the backend before any timing
    main()
