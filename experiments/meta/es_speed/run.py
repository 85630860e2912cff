"""Speed of one ES generation: a population of PPO inner runs on CartPole, each for
the full step budget, with the candidate axis sharded over every CPU core.

Issue 6's target: population 16 x 1e5 steps per candidate in under 60 s on a 2-core CPU.
Measures compile time apart from run time, for the two population modes: `chunk = 1`
(each device runs its candidates one by one with `lax.map`) and `chunk = 0` (one `vmap`
over a device's candidates). Writes `es-speed.csv` and `es-speed.png`.
"""

from __future__ import annotations

import os

import rlx

rlx.use_every_cpu_core()  # before jax starts: candidates run on every core

import csv  # noqa: E402
import time  # noqa: E402

from rlx.experiments import main  # noqa: E402

META = dict(
    name="es-speed",
    paper="issue 6 speed target",
    figure="seconds per ES generation (population x PPO CartPole inner runs)",
    claim="one generation of 16 candidates x 1e5 CartPole steps takes under 60 s on 2 CPU cores",
    expected="under 60 s per generation after compilation (cpu scale)",
    budget={"smoke": "about 1 min on 2 CPU cores", "cpu": "about 3 min on 2 shared CPU cores", "paper": "GPU"},
)

SCALES = {
    "smoke": dict(population=4, steps=4096, generations=2, chunks=(1,)),
    "cpu": dict(population=16, steps=100_000, generations=3, chunks=(1, 0)),
    "paper": dict(population=64, steps=10_000_000, generations=2, chunks=(0,), env="gymnax/Breakout-MinAtar"),
}


def run(scale: str = "smoke", out_dir: str | None = None) -> dict:
    import jax
    import numpy as np

    from rlx import envs
    from rlx.agents import ppo
    from rlx.agents.meta import drifts
    from rlx.agents.meta.es import ESConfig, MetaTask, MetaTrainer
    from rlx.agents.meta.meta_test import preset
    from rlx.train import make_train

    s = SCALES[scale]
    out_dir = out_dir or os.path.join("results", META["name"])
    os.makedirs(out_dir, exist_ok=True)
    env_id = s.get("env", "gymnax/CartPole-v1")
    env, env_params = envs.make(env_id)
    init = drifts.init_params("lpo", None, hidden=128)
    cfg = preset(env_id, total_steps=s["steps"], drift="lpo", drift_params=init)
    task = MetaTask(env_id, make_train(drifts.make_agent(env, cfg), cfg), cfg, env_params)
    rows = []
    for chunk in s["chunks"]:
        es = ESConfig(population_size=s["population"], generations=s["generations"], chunk=chunk, eval_every=0, sigma=0.1)
        seconds = []
        trainer = MetaTrainer([task], "drift_params", init, es, progress=False,
                              on_generation=lambda g, row: seconds.append(row["seconds"]))  # fmt: skip
        t = time.perf_counter()
        result = trainer.run()
        wall = time.perf_counter() - t
        steps = s["population"] * cfg.num_updates * cfg.num_envs * cfg.num_steps
        after = seconds[1:] or seconds
        rows.append(dict(
            env=env_id, population=s["population"], steps_per_candidate=s["steps"], chunk=chunk,
            devices=trainer.devices, device=jax.devices()[0].platform, compile_s=result.timings["compile_s"],
            first_generation_s=seconds[0], generation_s=float(np.median(after)),
            env_steps_per_s=steps / float(np.median(after)), wall_s=wall,
            load_1min=os.getloadavg()[0],
        ))  # fmt: skip
        print(rows[-1], flush=True)
    path = os.path.join(out_dir, f"{META['name']}.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    _plot(os.path.join(out_dir, f"{META['name']}.png"), rows)
    return {f"chunk={r['chunk']}": {k: round(r[k], 1) for k in ("compile_s", "generation_s", "env_steps_per_s")} for r in rows}


def _plot(path, rows) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    labels = [f"chunk={r['chunk']} ({'lax.map' if r['chunk'] == 1 else 'vmap' if r['chunk'] == 0 else 'chunks'})" for r in rows]
    ax.barh(labels, [r["generation_s"] for r in rows], label="one generation (compiled)")
    ax.barh(labels, [r["compile_s"] for r in rows], left=[r["generation_s"] for r in rows], alpha=0.4, label="compile (once)")
    ax.axvline(60, color="r", ls="--", lw=1, label="60 s target")
    r = rows[0]
    ax.set_xlabel("seconds")
    ax.set_title(f"{r['population']} x {r['steps_per_candidate']:.0e} steps, {r['env']}, {r['devices']} {r['device']} devices", fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main(run, SCALES, __doc__)
