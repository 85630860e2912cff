"""Meta-learning speed: one LPO ES generation, and LPG meta-steps per second.

    python benchmarks/bench_meta.py                    # both parts, CPU sizes: about 1 min on 2 cores
    python benchmarks/bench_meta.py --only lpo --chunk 1
    python benchmarks/bench_meta.py --lpo-env gymnax/Breakout-MinAtar --lpo-pop 64 \\
        --lpo-steps 10000000 --lpo-generations 2 --lpg-scale paper      # a GPU (gen 2's ~1 s re-trace is noise there)

Both parts run `rlx.agents.meta.es.MetaTrainer` exactly as meta-training does (ask,
the population's inner runs sharded over the devices, tell), with no ES-mean scoring,
and time each generation. The first generation compiles the population program
("compile s", reported apart); "s / generation" is the median of the later ones. The
second generation also re-traces evosax's ask and tell (about 1 s on CPU: the ES state
loses its weak types after the first tell), hence 4 generations by default, whose
median over generations 2-4 is the steady state.

- LPO (issue 6): population P x PPO runs of S env steps with an LPO drift, the
  meta-testing preset of the env (`meta_test.preset`: PureJaxRL's settings on classic
  control, 64 envs x 128 steps on MinAtar). Issue 6's targets: under 60 s for 16 x 1e5
  CartPole steps on a 2-core CPU, under 5 min for 64 x 1e7 MinAtar steps on an H100.
- LPG (issue 7): one meta-step is one ES generation: P candidates, each training fresh
  tabular agents for the full lifetime of `levels` fresh grid levels. The scale is an
  entry of experiments/meta/lpg_lifetimes/run.py's SCALES (TA-LPG network). Lifetimes
  are drawn per level, so the work varies by generation: agent updates are counted
  from the generation's own levels, and their rate is the median over the timed
  generations of each one's updates / seconds. A candidate's levels are vmapped, so
  they step together until the longest lifetime ends ("padded" updates in the JSON).

Prints one markdown table and writes benchmarks/results/meta.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os

import rlx  # noqa: E402

rlx.use_every_cpu_core()  # one XLA device per usable core, before jax starts

import jax  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
LPG_EXPERIMENT = os.path.join(os.path.dirname(HERE), "experiments", "meta", "lpg_lifetimes", "run.py")


def lpg_experiment():
    """experiments/meta/lpg_lifetimes/run.py as a module (experiments/ is not a package),
    for its SCALES and `setup`, so the benchmark runs what the experiment runs."""
    spec = importlib.util.spec_from_file_location("_bench_lpg_lifetimes", LPG_EXPERIMENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed_generations(trainer) -> tuple[list[float], dict]:
    """Run the trainer; per-generation wall seconds and its timings."""
    seconds: list[float] = []
    trainer.on_generation = lambda g, row: seconds.append(row["seconds"])
    result = trainer.run()
    return seconds, result.timings


def lpo(env_id: str, population: int, steps: int, generations: int, chunk: int) -> dict:
    from rlx import envs
    from rlx.agents import ppo
    from rlx.agents.meta import drifts
    from rlx.agents.meta.es import ESConfig, MetaTask, MetaTrainer
    from rlx.agents.meta.meta_test import preset
    from rlx.train import make_train

    env, env_params = envs.make(env_id)
    init = drifts.init_params("lpo", None, hidden=128)
    cfg = preset(env_id, total_steps=steps, drift="lpo", drift_params=init)
    task = MetaTask(env_id, make_train(drifts.make_agent(env, cfg), cfg), cfg, env_params)
    es = ESConfig(population_size=population, generations=generations, chunk=chunk, eval_every=0, sigma=0.1)
    trainer = MetaTrainer([task], "drift_params", init, es, progress=False)
    seconds, timings = timed_generations(trainer)
    gen_s = float(np.median(seconds[1:] or seconds))
    updates = population * cfg.num_updates
    mode = {0: "vmap", 1: "lax.map"}.get(trainer.candidate_batch, f"chunks of {trainer.candidate_batch}")
    return dict(
        part="LPO", env=env_id, population=population, steps_per_candidate=cfg.num_updates * cfg.num_envs * cfg.num_steps,
        num_envs=cfg.num_envs, num_steps=cfg.num_steps, chunk=trainer.candidate_batch,
        setting=f"{env_id}, {population} x {steps:,} steps ({cfg.num_envs} envs x {cfg.num_steps}), {mode}",
        devices=trainer.devices, compile_s=timings["compile_s"], generation_seconds=seconds, generation_s=gen_s,
        generations_per_s=1 / gen_s, candidate_runs_per_s=population / gen_s, agent_updates_per_s=updates / gen_s,
        env_steps_per_s=updates * cfg.num_envs * cfg.num_steps / gen_s,
    )  # fmt: skip


def lpg(scale: str, generations: int, chunk: int) -> dict:
    import jax.numpy as jnp

    from rlx.agents.meta.es import ESConfig, MetaTask, MetaTrainer
    from rlx.envs import meta_grid as mg

    exp = lpg_experiment()
    s = exp.SCALES[scale]
    env, dist, common, lpg_mod = exp.setup(s)
    init = jax.jit(lpg_mod.init_params, static_argnums=(1, 2))(jax.random.key(0), True, s["meta_hidden"])
    cfg = lpg_mod.LPGConfig(**common, temporal=True, lpg_params=init)
    levels = s["levels"]
    task = MetaTask("grid", lpg_mod.make_task_train(env, cfg, dist, levels), cfg, None)
    es = ESConfig(population_size=s["population"], generations=generations, sigma=s["sigma"], lr=s["lr"],
                  eval_every=0, chunk=chunk)  # fmt: skip
    trainer = MetaTrainer([task], "lpg_params", init, es, progress=False)
    seconds, timings = timed_generations(trainer)

    # The lifetimes each candidate met, from the keys the trainer used (make_task_train
    # splits a candidate's inner key into (levels, run) and samples the levels from the first).
    @jax.jit
    def lifetimes(keys):  # [P] -> [P, levels]
        lv = jax.vmap(lambda k: mg.sample_levels(jax.random.split(k)[0], dist, levels))(keys)
        return jnp.minimum(lv.lifetime, cfg.max_lifetime)

    applied, padded = [], []
    for g in range(generations):
        n = np.asarray(lifetimes(trainer.inner_keys(trainer.generation_keys(g)[1])[:, 0]))
        applied.append(int(n.sum()))
        padded.append(int(n.max(-1).sum() * levels))
    timed = slice(1, None) if generations > 1 else slice(None)
    gen_s = float(np.median(seconds[timed]))
    P = s["population"]
    updates_per_s = float(np.median([a / t for a, t in zip(applied[timed], seconds[timed])]))
    grid = f"grid {s['sizes'][0]}-{s['max_size']}, lifetimes {s['lifetime'][0]}-{s['lifetime'][1]}"
    return dict(
        part="LPG", scale=scale, population=P, levels=levels, num_envs=s["envs"], num_steps=s["steps"],
        meta_hidden=s["meta_hidden"], lifetime_range=list(s["lifetime"]), chunk=trainer.candidate_batch,
        setting=f"{scale}: TA-LPG GRU {s['meta_hidden']}, {P} x {levels} levels ({grid}), {s['envs']} envs x {s['steps']}",
        devices=trainer.devices, compile_s=timings["compile_s"], generation_seconds=seconds, generation_s=gen_s,
        generations_per_s=1 / gen_s, candidate_runs_per_s=P / gen_s, agent_updates_per_s=updates_per_s,
        env_steps_per_s=updates_per_s * s["envs"] * s["steps"], agent_updates=applied, padded_agent_updates=padded,
    )  # fmt: skip


def table(rows: list[dict]) -> str:
    lines = ["| part | setting | devices | compile s | 1st generation s | s / generation | generations/s "
             "| candidate runs/s | agent updates/s | env-steps/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        dev = f"{r['devices']} {jax.default_backend()}"
        lines.append(f"| {r['part']} | {r['setting']} | {dev} | {r['compile_s']:.1f} | {r['generation_seconds'][0]:.1f} "
                     f"| {r['generation_s']:.2f} | {r['generations_per_s']:.3f} | {r['candidate_runs_per_s']:,.1f} "
                     f"| {r['agent_updates_per_s']:,.0f} | {r['env_steps_per_s']:,.0f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("lpo", "lpg"), help="run one part only")
    parser.add_argument("--lpo-env", default="gymnax/CartPole-v1", help="inner env of the LPO part")
    parser.add_argument("--lpo-pop", type=int, default=16, help="ES population (even)")
    parser.add_argument("--lpo-steps", type=int, default=100_000, help="env steps per candidate's PPO run")
    parser.add_argument("--lpo-generations", type=int, default=4,
                        help="generations run; the first compiles, the second re-traces ask/tell (>= 4: a clean median)")
    parser.add_argument("--chunk", type=int, default=0,
                        help="LPO candidates at once per device: 0 = vmap, 1 = lax.map one by one, k = chunks of k")
    parser.add_argument("--lpg-scale", default="cpu", choices=("smoke", "cpu", "paper"),
                        help="an entry of experiments/meta/lpg_lifetimes/run.py's SCALES")
    parser.add_argument("--lpg-generations", type=int, default=4,
                        help="meta-steps run; the first compiles, the second re-traces ask/tell (>= 4: a clean median)")
    parser.add_argument("--lpg-chunk", type=int, default=-1, help="as --chunk for LPG; -1 = 1 on CPU, 0 on accelerators")
    args = parser.parse_args()

    rows = []
    if args.only in (None, "lpo"):
        rows.append(lpo(args.lpo_env, args.lpo_pop, args.lpo_steps, args.lpo_generations, args.chunk))
        print({k: v for k, v in rows[-1].items() if k != "setting"}, flush=True)
    if args.only in (None, "lpg"):
        rows.append(lpg(args.lpg_scale, args.lpg_generations, args.lpg_chunk))
        print({k: v for k, v in rows[-1].items() if k != "setting"}, flush=True)
    print(f"\njax {jax.__version__}, {len(jax.devices())} {jax.default_backend()} device(s): "
          f"{jax.devices()[0].device_kind}; load {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print(table(rows))
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "meta.json"), "w") as f:
        json.dump({"rows": rows, "jax": jax.__version__, "backend": jax.default_backend(),
                   "devices": [str(d) for d in jax.devices()], "device_kind": jax.devices()[0].device_kind,
                   "load_1min": os.getloadavg()[0], "args": vars(args)}, f, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
