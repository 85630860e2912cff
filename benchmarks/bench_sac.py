"""SAC throughput on gymnax Pendulum-v1: rlx against rejax 0.1.3, in one process.

Both run one env, one gradient step per env step (update-to-data 1), batch 256,
(64, 64) ReLU networks (rejax's default), twin critics, automatic entropy tuning,
and the same number of env steps with the same random warm-up. Reported: env-steps/s
excluding compile (run only) and including compile, and their ratio.

rejax 0.1.3 unpacks gymnax's pre-1.0 five-value `step`, so it runs on gymnax's
`LegacyStepAPIWrapper`, subclassed here because the wrapper's `__getattr__` recurses
forever when rejax copies the env (it looks up `_env` before it exists). rejax's
`train` evaluates every `eval_freq` steps; we set it to the whole run, so it
evaluates once (128 episodes), at the end.

    .venv/bin/python benchmarks/bench_sac.py [--steps 10000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import jax


def bench_rlx(steps: int, warmup: int, seed: int):
    from rlx import envs
    from rlx.agents import sac
    from rlx.train import make_train

    env, params = envs.make("gymnax/Pendulum-v1")
    cfg = sac.SACConfig(total_steps=steps, learning_starts=warmup, batch_size=256, utd=1.0, hidden=(64, 64), critic_hidden=(64, 64))
    train = jax.jit(make_train(sac.make_agent(env, cfg), cfg))
    key = jax.random.key(seed)
    t = time.perf_counter()
    compiled = train.lower(key, cfg, params).compile()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    _, metrics = compiled(key, cfg, params)
    jax.block_until_ready(metrics)
    run_s = time.perf_counter() - t
    return compile_s, run_s, float(metrics["episode_return"][-1])


def bench_rejax(steps: int, warmup: int, seed: int):
    import gymnax
    from gymnax.wrappers.compat import LegacyStepAPIWrapper
    from rejax import SAC

    class Legacy(LegacyStepAPIWrapper):
        def __getattr__(self, name):
            if name.startswith("__") or name == "_env":
                raise AttributeError(name)
            return getattr(self._env, name)

    env, params = gymnax.make("Pendulum-v1")
    algo = SAC.create(
        env=Legacy(env), env_params=params, total_timesteps=steps, eval_freq=steps, skip_initial_evaluation=True,
        batch_size=256, fill_buffer=warmup, num_envs=1, hidden_layer_sizes=(64, 64),
    )  # fmt: skip
    train = jax.jit(algo.train)
    key = jax.random.PRNGKey(seed)
    t = time.perf_counter()
    compiled = train.lower(key).compile()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    _, evaluation = compiled(key)
    jax.block_until_ready(evaluation)
    run_s = time.perf_counter() - t
    return compile_s, run_s, float(evaluation[1].mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--warmup", type=int, default=1_000)
    p.add_argument("--repeats", type=int, default=1, help="alternate rlx and rejax this many times; best is reported")
    args = p.parse_args()
    results: dict[str, list] = {"rlx": [], "rejax 0.1.3": []}
    for r in range(args.repeats):
        results["rlx"].append(bench_rlx(args.steps, args.warmup, r))
        try:
            results["rejax 0.1.3"].append(bench_rejax(args.steps, args.warmup, r))
        except Exception as err:  # not installed, or broken on this stack
            print(f"rejax could not run: {type(err).__name__}: {err}")
    n = args.steps
    rows = {}
    print(f"\nSAC, gymnax Pendulum-v1, {n} env steps ({args.warmup} warm-up), UTD 1, batch 256, (64, 64) nets, {jax.default_backend()}\n")
    print("| impl | compile s | run s | env-steps/s (excl. compile) | env-steps/s (incl. compile) | final return |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        if not runs:
            continue
        compile_s, run_s, ret = min(runs, key=lambda x: x[1])
        rows[name] = (n / run_s, n / (compile_s + run_s))
        print(f"| {name} | {compile_s:.1f} | {run_s:.1f} | {n / run_s:,.0f} | {n / (compile_s + run_s):,.0f} | {ret:.0f} |")
    if len(rows) == 2:
        a, b = rows["rlx"], rows["rejax 0.1.3"]
        print(f"\nratio rlx / rejax: {a[0] / b[0]:.2f}x excluding compile, {a[1] / b[1]:.2f}x including compile")


if __name__ == "__main__":
    main()
