"""PPO throughput and time-to-threshold, rlx against its peers in the same process.

    python benchmarks/bench_ppo.py cartpole   # rlx vs rejax (if installed), 1 and 8 seeds
    python benchmarks/bench_ppo.py brax       # rlx vs brax.training on brax inverted_pendulum

Prints a markdown table and writes benchmarks/results/ppo_<suite>.json. Numbers are
env steps per second, excluding and including compile; "to 475" is the wall time
(compile included) until the population's mean return first reaches the threshold,
interpolated from per-update metrics.
"""

from __future__ import annotations

import json
import os
import sys
import time

import rlx  # noqa: E402

rlx.use_every_cpu_core()  # one XLA device per usable core, before jax starts

import jax  # noqa: E402
import numpy as np  # noqa: E402
from timing import compile_and_run  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def row(system, setting, compile_s, run_s, steps, curve_steps=None, curve_returns=None, threshold=None, final=None):
    """One table row; `curve_*` give the mean return against env steps (per member)."""
    out = dict(system=system, setting=setting, compile_s=compile_s, run_s=run_s, steps=steps,
               sps=steps / run_s, sps_incl=steps / (run_s + compile_s), final_return=final)  # fmt: skip
    if curve_returns is not None and threshold is not None:
        hit = np.flatnonzero(np.asarray(curve_returns) >= threshold)
        if hit.size:
            frac = float(curve_steps[hit[0]]) / float(curve_steps[-1])
            out["time_to_threshold_s"] = compile_s + frac * run_s
            out["steps_to_threshold"] = float(curve_steps[hit[0]])
    return out


# -- rlx ---------------------------------------------------------------------------------
def rlx_ppo(env_name, cfg, seeds, threshold, env_kwargs=None, evaluate=False, population_mode="auto"):
    """`evaluate`: curve and final return from deterministic evaluation after every update
    (16 episodes; its time counts as run time), brax.training's own metric. Use it where
    episodes are long and few stochastic training episodes finish. `population_mode` is
    `Runner`'s ("auto" is vmap)."""
    from rlx import envs
    from rlx.agents import ppo
    from rlx.population import default_devices, make_population
    from rlx.train import Runner

    env, params = envs.make(env_name, **(env_kwargs or {}))
    agent = ppo.make_agent(env, cfg)
    pop = make_population(cfg, seeds=seeds)
    extra = dict(chunk_updates=1, eval_env=env, eval_every=1) if evaluate else dict(chunk_updates=cfg.num_updates)
    runner = Runner(agent, pop, params, None, devices=default_devices(seeds), progress=False,
                    population_mode=population_mode, **extra)
    res = runner.run()
    t = res.timings
    column = "eval_return" if evaluate else "episode_return"
    ret = np.nanmean(res.metrics[column], 0)
    steps = res.metrics["env_steps"][0]
    final = float(np.nanmean(res.metrics[column][:, -max(1, ret.size // 20):]))
    return row("rlx", f"{env_name}, {seeds} seed(s), {runner.devices} device(s), {runner.population_mode}", t["compile_s"] + t["init_s"],
               t["run_s"], seeds * cfg.total_steps, steps, ret, threshold, final)  # fmt: skip


# -- rejax ---------------------------------------------------------------------------------
def rejax_ppo_cartpole(seeds, total_steps, threshold):
    try:
        from rejax import PPO
    except Exception as err:  # not installed, or broken against this jax
        return {"system": "rejax", "setting": f"CartPole, {seeds} seed(s)", "error": f"{type(err).__name__}: {err}"}
    import gymnax
    from gymnax.wrappers.compat import LegacyStepAPIWrapper

    class Legacy(LegacyStepAPIWrapper):
        # gymnax's adapter recurses forever when copied (its __getattr__ looks up `_env`
        # before it exists); rejax copies its env, so guard the lookup.
        def __getattr__(self, name):
            if name == "_env":
                raise AttributeError(name)
            return getattr(self._env, name)

    env, params = gymnax.make("CartPole-v1")
    # rejax 0.1.3 unpacks gymnax's old five-value step: gymnax ships this adapter for it.
    algo = PPO.create(env=Legacy(env), env_params=params, num_envs=4, num_steps=128, num_epochs=4,
                      num_minibatches=4, learning_rate=2.5e-4, gamma=0.99, gae_lambda=0.95, clip_eps=0.2,
                      ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5, total_timesteps=total_steps,
                      eval_freq=total_steps, skip_initial_evaluation=True)  # fmt: skip
    # One evaluation (128 episodes) at the end only: rejax's periodic evaluations would cost
    # more env steps than the training itself, so its time-to-threshold is not measured.
    train = jax.jit(jax.vmap(algo.train))
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    compile_s, run_s, (_, evaluation) = compile_and_run(train, keys)
    final = float(np.asarray(evaluation[1]).mean(axis=(0, 2))[-1])  # mean over seeds and eval episodes
    out = row("rejax 0.1.3", f"CartPole, {seeds} seed(s), 1 device", compile_s, run_s, seeds * total_steps, final=final)
    out["note"] = "run time includes one final 128-episode evaluation; final return is that evaluation's mean"
    out["no_curve"] = True
    return out


# -- brax.training -------------------------------------------------------------------------
def _shim_device_put_replicated():
    """brax.training 0.14.2 calls `jax.device_put_replicated`, which jax 0.10 removed. On
    newer jax (a GPU machine's, say) put back the one behaviour brax needs: stack the tree
    once per device, for its `pmap`. On the locked jax 0.9.2 this does nothing."""
    if hasattr(jax, "device_put_replicated"):
        return False
    import jax.numpy as jnp

    def device_put_replicated(tree, devices):
        return jax.tree.map(lambda a: jnp.stack([jnp.asarray(a)] * len(devices)), tree)

    jax.device_put_replicated = device_put_replicated
    return True


def brax_ppo_inverted_pendulum(total_steps, threshold):
    import functools

    from brax import envs as brax_envs
    from brax.training.agents.ppo import train as brax_ppo

    shimmed = _shim_device_put_replicated()
    env = brax_envs.get_environment("inverted_pendulum", backend="generalized")
    progress = []
    train_fn = functools.partial(
        brax_ppo.train, num_timesteps=total_steps, num_evals=11, reward_scaling=10, episode_length=1000,
        normalize_observations=True, action_repeat=1, unroll_length=5, num_minibatches=32,
        num_updates_per_batch=4, discounting=0.97, learning_rate=3e-4, entropy_cost=1e-2, num_envs=2048,
        batch_size=1024, seed=1,
    )  # fmt: skip
    t0 = time.perf_counter()
    times = []

    def on_progress(step, metrics):
        times.append(time.perf_counter() - t0)
        progress.append((step, float(metrics["eval/episode_reward"])))

    train_fn(environment=env, progress_fn=on_progress)
    total = time.perf_counter() - t0
    # brax compiles inside train(); its first progress call comes after the initial eval,
    # so we report the wall time to the first call as its compile-and-setup time.
    setup = times[0] if times else 0.0
    steps = np.asarray([s for s, _ in progress], float)
    rets = np.asarray([r for _, r in progress])
    out = row("brax.training 0.14.2", "inverted_pendulum generalized, 2048 envs", setup, total - setup, total_steps,
              steps, rets, threshold, float(rets[-1]))  # fmt: skip
    out["note"] = "includes brax's periodic evaluation; compile = time to its first progress report"
    if shimmed:
        out["system"] += f" (device_put_replicated shim, jax {jax.__version__})"
    return out


def guarded(system, setting, fn, *args):
    """Run a peer; a peer that fails to run becomes a row saying why, not a crash."""
    try:
        return fn(*args)
    except Exception as err:  # peers break against new jax/gymnax releases; report, don't hide
        return {"system": system, "setting": setting, "error": f"{type(err).__name__}: {str(err)[:200]}"}


def table(rows, peer_of=None):
    lines = ["| system | setting | compile s | env-steps/s | incl. compile | time to threshold s | final return |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['system']} | {r['setting']} | – | – | – | – | not run: {r['error'][:80]} |")
            continue
        if "time_to_threshold_s" in r:
            ttt = f"{r['time_to_threshold_s']:.1f}"
        else:
            ttt = "not measured" if r.get("no_curve") else "not reached"
        lines.append(f"| {r['system']} | {r['setting']} | {r['compile_s']:.1f} | {r['sps']:,.0f} | {r['sps_incl']:,.0f} "
                     f"| {ttt} | {r['final_return']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def main(suite: str) -> list[dict]:
    from rlx.agents import ppo

    rows = []
    if suite == "cartpole":
        cfg = ppo.PPOConfig()
        for seeds in (1, 8):
            rows.append(rlx_ppo("gymnax/CartPole-v1", cfg, seeds, 475))
            rows.append(guarded("rejax 0.1.3", f"CartPole, {seeds} seed(s)", rejax_ppo_cartpole, seeds, cfg.total_steps, 475))
    elif suite == "brax":
        rows.append(rlx_ppo("brax/inverted_pendulum", ppo.brax_config(total_steps=1_000_000), 1, 900,
                            {"backend": "generalized"}, evaluate=True))  # fmt: skip
        rows.append(guarded("brax.training", "inverted_pendulum", brax_ppo_inverted_pendulum, 1_000_000, 900))
    else:
        raise SystemExit(f"unknown suite {suite!r}: accepted values are cartpole, brax")
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"ppo_{suite}.json"), "w") as f:
        json.dump({"rows": rows, "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]}, f, indent=2)
    print(table(rows))
    return rows


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cartpole")
