"""Timing shared by the benchmark scripts."""

from __future__ import annotations

import time
from typing import Any

import jax


def compile_and_run(jitted: Any, *args: Any) -> tuple[float, float, Any]:
    """Compile the jitted function for `args`, then run it once to completion: `(compile
    seconds, run seconds, output)`."""
    t = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return compile_s, time.perf_counter() - t, out


def best_of(run: Any, repeats: int = 2) -> tuple[float, float]:
    """`(compile seconds, best run seconds)` of `jax.jit(run)(key)` over `repeats` runs."""
    key = jax.random.key(0)
    start = time.perf_counter()
    compiled = jax.jit(run).lower(key).compile()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(key))
        times.append(time.perf_counter() - start)
    return compile_s, min(times)


def env_alone(name: str, num_envs: int, steps: int, system: str = "", repeats: int = 2) -> dict:
    """Env-alone throughput of the registered env `name`: random actions in `num_envs`
    vmapped envs for `steps` steps in one `jit(scan)`, auto-reset included. Returns a row
    `{system, envs, compile_s, steps_per_s}` (run time is the best of `repeats`)."""
    from rlx import envs

    env, params = envs.make(name)
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

    compile_s, run_s = best_of(run, repeats)
    return {"system": system or f"rlx {name}", "envs": num_envs, "compile_s": compile_s,
            "steps_per_s": num_envs * steps / run_s}  # fmt: skip


def throughput_table(title: str, rows: list[dict]) -> str:
    """A markdown table of `env_alone`-style rows under a `### title` heading."""
    lines = [f"### {title}", "", "| system | envs | compile (s) | env-steps/s |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['system']} | {r['envs']} | {r['compile_s']:.1f} | {r['steps_per_s']:,.0f} |")
    return "\n".join(lines)
