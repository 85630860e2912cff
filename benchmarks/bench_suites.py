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

import jax
import jax.numpy as jnp
from timing import best_of, env_alone, throughput_table


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

    compile_s, run_s = best_of(lambda key: run(jax.random.key_data(key)))
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

    compile_s, run_s = best_of(lambda key: run(jax.random.key_data(key)))
    return {"system": f"Playground {env_id}, wrap_for_brax_training", "envs": num_envs, "compile_s": compile_s,
            "steps_per_s": num_envs * steps / run_s}  # fmt: skip


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
            rows.append(env_alone(f"{suite}/{env_id}", n, args.steps))
            if args.upstream:
                rows.append(upstream[suite](env_id, n, args.steps))
        print(throughput_table(f"{suite}/{env_id}, {args.steps} steps", rows), flush=True)


if __name__ == "__main__":
    jnp.zeros(())  # start the backend before any timing
    main()
