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
import numpy as np

from rlx import envs


def bench_mjx(name: str, num_envs: int, steps: int, repeats: int = 2) -> dict:
    env, params = envs.make(f"mujoco/{name}")
    space = env.action_space(params)

    def run(key):
        k_reset, k_run = jax.random.split(key)
        _, state = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, num_envs), params)

        def body(state, k):
            k_act, k_env = jax.random.split(k)
            action = jax.vmap(space.sample)(jax.random.split(k_act, num_envs))
            _, state, reward, *_ = jax.vmap(env.step, (0, 0, 0, None))(jax.random.split(k_env, num_envs), state,
                                                                       action, params)  # fmt: skip
            return state, reward.sum()

        return jax.lax.scan(body, state, jax.random.split(k_run, steps))[1].sum()

    key = jax.random.key(0)
    start = time.perf_counter()
    compiled = jax.jit(run).lower(key).compile()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(key))
        times.append(time.perf_counter() - start)
    return {"system": f"rlx MJX ({jax.default_backend()})", "envs": num_envs, "compile_s": compile_s,
            "steps_per_s": num_envs * steps / min(times)}  # fmt: skip


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


def table(name: str, rows: list[dict]) -> str:
    lines = [f"### {name}", "", "| system | envs | compile (s) | env-steps/s |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['system']} | {r['envs']} | {r['compile_s']:.1f} | {r['steps_per_s']:,.0f} |")
    return "\n".join(lines)


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
            rows.append(bench_mjx(name, n, args.steps))
            if not args.no_gymnasium:
                rows.append(bench_gymnasium(name, n, args.steps))
        print(table(name, rows), flush=True)


if __name__ == "__main__":
    jnp.zeros(())  # start the backend before any timing
    main()
