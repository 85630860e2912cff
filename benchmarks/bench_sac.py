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
    .venv/bin/python benchmarks/bench_sac.py --suite brax   # rlx vs brax.training on inverted_pendulum
    .venv/bin/python benchmarks/bench_sac.py --peak         # matmul GFLOP/s at the update's layer shape

The brax suite runs brax.training 0.14.2's own SAC with the setting of rlx's
`sac.brax_config` (128 envs, batch 128, 32 gradient steps per 128 env steps, γ 0.997,
lr 6e-4, reward scale 5, 8192 warm-up transitions, observation normalisation, 1e5
steps), and both are judged by deterministic evaluation, 11 points along the run.
"""

from __future__ import annotations

import argparse
import time

import jax
from timing import compile_and_run


def bench_rlx(steps: int, warmup: int, seed: int):
    from rlx import envs
    from rlx.agents import sac
    from rlx.train import make_train

    env, params = envs.make("gymnax/Pendulum-v1")
    cfg = sac.SACConfig(total_steps=steps, learning_starts=warmup, batch_size=256, utd=1.0, hidden=(64, 64), critic_hidden=(64, 64))
    train = jax.jit(make_train(sac.make_agent(env, cfg), cfg))
    key = jax.random.key(seed)
    compile_s, run_s, (_, metrics) = compile_and_run(train, key, cfg, params)
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
    compile_s, run_s, (_, evaluation) = compile_and_run(train, key)
    return compile_s, run_s, float(evaluation[1].mean())


def brax_suite(steps: int) -> list[dict]:
    """rlx SAC and brax.training's SAC on brax inverted_pendulum (generalized), 1 seed each."""
    import functools

    import numpy as np
    from bench_ppo import _shim_device_put_replicated, guarded, row, table

    from rlx import envs
    from rlx.agents import sac
    from rlx.population import make_population
    from rlx.train import Runner

    def rlx_run():
        env, params = envs.make("brax/inverted_pendulum", backend="generalized")
        cfg = sac.brax_config(total_steps=steps)
        agent = sac.make_agent(env, cfg)
        chunk = -(-cfg.num_updates // 10)  # 10 evaluations along the run, as brax's num_evals=11
        res = Runner(agent, make_population(cfg, seeds=1), params, None, devices=1, progress=False,
                     chunk_updates=chunk, eval_env=env, eval_every=1, eval_episodes=16).run()  # fmt: skip
        t, m = res.timings, res.metrics
        ok = np.isfinite(m["eval_return"][0])
        x, y = m["env_steps"][0][ok], m["eval_return"][0][ok]
        return row("rlx", "inverted_pendulum generalized, 128 envs", t["compile_s"] + t["init_s"], t["run_s"],
                   cfg.total_steps, x, y, 900, float(y[-1]))  # fmt: skip

    def brax_run():
        from brax import envs as brax_envs
        from brax.training.agents.sac import train as brax_sac

        shimmed = _shim_device_put_replicated()
        env = brax_envs.get_environment("inverted_pendulum", backend="generalized")
        progress, times = [], []
        t0 = time.perf_counter()

        def on_progress(step, metrics):
            times.append(time.perf_counter() - t0)
            progress.append((step, float(metrics["eval/episode_reward"])))

        functools.partial(
            brax_sac.train, num_timesteps=steps, episode_length=1000, num_envs=128, batch_size=128,
            grad_updates_per_step=32, learning_rate=6e-4, discounting=0.997, reward_scaling=5,
            normalize_observations=True, min_replay_size=8192, max_replay_size=100_000, num_evals=11,
            deterministic_eval=True, seed=1,
        )(environment=env, progress_fn=on_progress)  # fmt: skip
        total = time.perf_counter() - t0
        setup = times[0] if times else 0.0
        x = np.asarray([a for a, _ in progress], float)
        y = np.asarray([b for _, b in progress])
        out = row("brax.training 0.14.2" + (f" (device_put_replicated shim, jax {jax.__version__})" if shimmed else ""),
                  "inverted_pendulum generalized, 128 envs", setup, total - setup, steps, x, y, 900, float(y[-1]))  # fmt: skip
        out["note"] = "compile = time to brax's first progress report (after its initial evaluation)"
        return out

    rows = [rlx_run(), guarded("brax.training", "inverted_pendulum", brax_run)]
    print(f"\nSAC, brax inverted_pendulum, {steps} env steps, 1 seed, {jax.default_backend()}\n")
    print(table(rows))
    if "error" not in rows[1]:
        print(f"\nratio rlx / brax.training: {rows[0]['sps'] / rows[1]['sps']:.2f}x env-steps/s excluding compile, "
              f"{rows[0]['sps_incl'] / rows[1]['sps_incl']:.2f}x including it")  # fmt: skip
    return rows


def matmul_peak(n: int = 20_000) -> float:
    """GFLOP/s of a `lax.scan` of `relu(x @ W)` with x `[256, 64]` and W `[64, 64]`: the
    layer shape of the SAC update above, without anything else."""
    import jax.numpy as jnp

    k = jax.random.key(0)
    x, w = jax.random.normal(k, (256, 64)), jax.random.normal(k, (64, 64)) * 0.1
    chain = jax.jit(lambda x: jax.lax.scan(lambda h, _: (jax.nn.relu(h @ w), None), x, None, n)[0])
    chain(x).block_until_ready()
    t = time.perf_counter()
    chain(x).block_until_ready()
    return 2 * 256 * 64 * 64 * n / (time.perf_counter() - t) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="env steps (default: 10000 for pendulum, 100096 for brax)")
    p.add_argument("--warmup", type=int, default=1_000)
    p.add_argument("--repeats", type=int, default=1, help="alternate rlx and rejax this many times; best is reported")
    p.add_argument("--suite", choices=("pendulum", "brax"), default="pendulum",
                   help="pendulum: rlx vs rejax on gymnax Pendulum; brax: rlx vs brax.training on inverted_pendulum")
    p.add_argument("--peak", action="store_true", help="only print the matmul GFLOP/s at the update's layer shape")
    args = p.parse_args()
    if args.peak:
        print(f"relu(x @ W), x [256, 64], W [64, 64]: {matmul_peak():.1f} GFLOP/s on {jax.default_backend()}")
        return
    if args.suite == "brax":
        brax_suite(args.steps or 100_096)
        return
    args.steps = args.steps or 10_000
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
