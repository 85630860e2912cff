"""Benchmark: env-alone throughput of the adapted JAX env suites (jumanji/, playground/).

    .venv/bin/python benchmarks/bench_suites.py [--suites jumanji,playground] [--envs 1,64,1024] [--steps 100]
    .venv/bin/python benchmarks/bench_suites.py --jumanji Snake-v1 --playground CartpoleBalance --upstream

Random actions, no policy. rlx: `jit(scan(vmap(env.step)))` over `--steps` steps for each
batch size, auto-reset included; compile time (`.lower().compile()`) apart from run time
(best of 2). With `--upstream`, the same loop over the suite's own auto-resetting
wrapper, to show what the adapter costs: Jumanji's `AutoResetWrapper` under `jax.vmap`,
Playground's `wrap_for_brax_training` (brax's vmap, episode and auto-reset wrappers, as
Playground trains). Both run on whatever device JAX picks. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from rlx import envs


def timed(run, repeats: int = 2) -> tuple[float, float]:
    """(compile seconds, best run seconds) of `run(key)`."""
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


def bench_rlx(name: str, num_envs: int, steps: int) -> dict:
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

    compile_s, run_s = timed(run)
    return {"system": f"rlx {name}", "envs": num_envs, "compile_s": compile_s, "steps_per_s": num_envs * steps / run_s}


def bench_jumanji_upstream(env_id: str, num_envs: int, steps: int) -> dict:
    import jumanji
    from jumanji.wrappers import AutoResetWrapper

    env = AutoResetWrapper(jumanji.make(env_id))
    n = jnp.asarray(env.action_spec.num_values)

    def run(key):
        k_reset, k_run = jax.random.split(key)
        state, _ = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs))

        def body(state, k):
            action = jax.random.randint(k, (num_envs, *n.shape), 0, n)
            state, ts = jax.vmap(env.step)(state, action)
            return state, ts.reward.sum()

        return jax.lax.scan(body, state, jax.random.split(k_run, steps))[1].sum()

    compile_s, run_s = timed(lambda key: run(jax.random.key_data(key)))
    return {"system": f"Jumanji {env_id}, AutoResetWrapper + vmap", "envs": num_envs, "compile_s": compile_s,
            "steps_per_s": num_envs * steps / run_s}  # fmt: skip


def bench_playground_upstream(env_id: str, num_envs: int, steps: int) -> dict:
    from mujoco_playground import dm_control_suite, wrapper

    base = dm_control_suite.load(env_id, config_overrides={"impl": "jax"})
    env = wrapper.wrap_for_brax_training(base, episode_length=base._config.episode_length)

    def run(key):
        k_reset, k_run = jax.random.split(key)
        state = env.reset(jax.random.split(k_reset, num_envs))

        def body(state, k):
            state = env.step(state, jax.random.uniform(k, (num_envs, env.action_size), minval=-1.0, maxval=1.0))
            return state, state.reward.sum()

        return jax.lax.scan(body, state, jax.random.split(k_run, steps))[1].sum()

    compile_s, run_s = timed(lambda key: run(jax.random.key_data(key)))
    return {"system": f"Playground {env_id}, wrap_for_brax_training", "envs": num_envs, "compile_s": compile_s,
            "steps_per_s": num_envs * steps / run_s}  # fmt: skip


def table(title: str, rows: list[dict]) -> str:
    lines = [f"### {title}", "", "| system | envs | compile (s) | env-steps/s |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['system']} | {r['envs']} | {r['compile_s']:.1f} | {r['steps_per_s']:,.0f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", default="jumanji,playground", help="comma-separated: jumanji, playground")
    parser.add_argument("--jumanji", default="Snake-v1", help="the jumanji/ env")
    parser.add_argument("--playground", default="CartpoleBalance", help="the playground/ env")
    parser.add_argument("--envs", default="1,64,1024", help="comma-separated batch sizes")
    parser.add_argument("--steps", type=int, default=100, help="steps per env in the scan")
    parser.add_argument("--upstream", action="store_true", help="also the suite's own auto-reset loop")
    args = parser.parse_args()
    sizes = [int(n) for n in args.envs.split(",")]
    print(f"jax {jax.__version__} on {jax.default_backend()}: {[d.device_kind for d in jax.devices()]}")
    upstream = {"jumanji": bench_jumanji_upstream, "playground": bench_playground_upstream}
    for suite in args.suites.split(","):
        env_id = getattr(args, suite)
        rows = []
        for n in sizes:
            rows.append(bench_rlx(f"{suite}/{env_id}", n, args.steps))
            if args.upstream:
                rows.append(upstream[suite](env_id, n, args.steps))
        print(table(f"{suite}/{env_id}, {args.steps} steps", rows), flush=True)


if __name__ == "__main__":
    jnp.zeros(())  # start the backend before any timing
    main()
