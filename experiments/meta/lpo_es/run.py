"""LPO meta-training with OpenES on CartPole, meta-tested against PPO and DPO.

The inner loop is PPO on CartPole with 10 epochs per batch and a learning rate of 1e-2,
a setting where unclipped policy updates collapse on about half the seeds while PPO's
clip solves every seed. The learned drift starts from a zero head and a random first
layer (no PPO-init), which is D ≡ 0: plain unclipped policy-gradient updates. OpenES
(centered ranks, Adam) maximises the final return of each candidate's full inner run.
Then the ES mean is meta-tested with fresh seeds on CartPole and on held-out Acrobot,
against PPO, DPO, the D = 0 start and two controls (the learned network with its head
negated, and with a random head of the same norm), which tell a learned drift from "any
nonzero drift helps".

Writes `lpo-es.png` (fitness per generation; drift heatmaps of the learned LPO, PPO and
DPO; meta-test bars), `lpo-es.csv` (one row per generation), `lpo-es-meta-test.csv`
(one row per meta-test run) and `es/` (the ES run: metrics.csv, mean.npz, best.npz,
checkpoints; `--resume` continues it).
"""

from __future__ import annotations

import os

import rlx

rlx.use_every_cpu_core()  # before jax starts: candidates run on every core

import csv  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from rlx.experiments import main  # noqa: E402

META = dict(
    name="lpo-es",
    paper="Lu et al. 2022, Discovered Policy Optimisation (LPO); ES settings of Goldie et al. 2025",
    figure="ES meta-training curve of a learned drift, its heatmap, and a held-out meta-test",
    claim="OpenES over a bias-free LPO drift, started from D = 0, raises the final return of "
          "PPO-style inner training over generations, towards PPO's; the learned drift does at "
          "least as well as PPO on a held-out env.",
    expected="cpu scale: the ES mean's fitness rises from about 210 (D = 0: half the seeds "
             "collapse) towards PPO's 500 on CartPole; Acrobot meta-test within PPO's CI.",
    budget={"smoke": "about 1.5-2.5 min on 2 CPU cores", "cpu": "about 13 min on 2 shared CPU cores "
            "(12 generations of 16 x 1e5 steps, then 48 meta-test runs)", "paper": "GPU"},
)  # fmt: skip

ENV = "gymnax/CartPole-v1"
HELD_OUT = ("gymnax/Acrobot-v1",)
INNER = dict(update_epochs=10, lr=1e-2)  # the setting where D = 0 collapses
SCALES = {
    # Smoke meta-tests on CartPole only: each held-out env costs one compile per drift kind.
    "smoke": dict(population=4, generations=2, steps=4096, eval_seeds=2, test_seeds=2, test_steps=4096,
                  hidden=16, sigma=0.1, lr=0.03, held_out=()),
    "cpu": dict(population=16, generations=12, steps=100_000, eval_seeds=4, test_seeds=8, test_steps=100_000,
                hidden=128, sigma=0.1, lr=0.03),
    # The paper-scale setting of Goldie et al. 2025 (GPU): population 64, 800 generations,
    # MinAtar inner loops of 1e7 steps (see experiments/meta/lpo_es/README.md); here on CartPole.
    "paper": dict(population=64, generations=800, steps=1_000_000, eval_seeds=16, test_seeds=16,
                  test_steps=1_000_000, hidden=128, sigma=0.03, lr=0.03),
}  # fmt: skip


def run(scale: str = "smoke", out_dir: str | None = None, resume: bool = False) -> dict:
    import jax

    from rlx import envs
    from rlx.agents import ppo
    from rlx.agents.meta import drifts
    from rlx.agents.meta.es import ESConfig, MetaTask, MetaTrainer
    from rlx.agents.meta.meta_test import Drift, meta_test, summary
    from rlx.train import make_train

    s = SCALES[scale]
    out_dir = out_dir or os.path.join("results", META["name"])
    es_dir = os.path.join(out_dir, "es")
    if not resume and os.path.exists(es_dir):
        shutil.rmtree(es_dir)  # a fresh run of the experiment
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()

    env, env_params = envs.make(ENV)
    # Random first layer, zero head: D ≡ 0, and antithetic pairs are distinct drifts
    # (from all zeros, θ and -θ are the same drift; see drifts.init_params).
    init = drifts.init_params("lpo", jax.random.key(0), hidden=s["hidden"], zero_head=True)
    cfg = ppo.PPOConfig(**INNER, total_steps=s["steps"], drift="lpo", drift_params=init)
    task = MetaTask("cartpole", make_train(drifts.make_agent(env, cfg), cfg), cfg, env_params)
    es = ESConfig(
        population_size=s["population"], generations=s["generations"], lr=s["lr"], sigma=s["sigma"],
        lr_decay=0.99, sigma_decay=0.99, eval_seeds=s["eval_seeds"],
    )  # fmt: skip
    result = MetaTrainer([task], "drift_params", init, es, out_dir=es_dir).run(resume=resume)

    learned = Drift("LPO (ES mean)", "lpo", jax.device_get(result.mean))
    contenders = [Drift("PPO", "ppo"), Drift("DPO", "dpo", drifts.init_params("dpo")), learned,
                  Drift("D = 0 (start)", "lpo", init)] + controls(learned.params)  # fmt: skip
    rows, _ = meta_test(contenders, (ENV,) + s.get("held_out", HELD_OUT), (1.0,), s["test_seeds"], s["test_steps"], INNER, progress=True)
    table = summary(rows)

    name = META["name"]
    _write_history(os.path.join(out_dir, f"{name}.csv"), result.history)
    _write_rows(os.path.join(out_dir, f"{name}-meta-test.csv"), rows)
    _plot(os.path.join(out_dir, f"{name}.png"), result, learned, table, s)
    mf = result.history["mean_fitness"]
    return {
        # The ES mean on the fixed evaluation keys, (mean, std over the eval seeds): before
        # the first generation (D = 0) and after the last (with every seed's value).
        "es_mean_fitness_first": (round(float(mf[0]), 1), round(float(result.history["mean_fitness_std"][0]), 1)),
        "es_mean_fitness_final": (round(float(np.mean(result.final_mean_fitness)), 1),
                                  round(float(np.std(result.final_mean_fitness)), 1)),
        "es_mean_fitness_final_per_seed": [round(float(x), 1) for x in result.final_mean_fitness],
        "population_fitness_by_generation": [round(float(x), 1) for x in result.history["fitness_mean"]],
        "meta_test_final_return": {f"{e} {d}": (round(m, 1), round(h, 1)) for (e, d, _), (m, h) in table.items()},
        "es_timings_s": {k: round(v, 1) for k, v in result.timings.items()},
        "seconds_per_generation": float(np.median(result.history["seconds"])),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def controls(params: dict) -> list:
    """Drifts that tell a learned direction from "any nonzero drift helps": the learned
    network with its head negated (f -> -f, the antithetic twin of the ES mean) and with a
    random head of the same norm (same first layer)."""
    import jax
    import jax.numpy as jnp

    from rlx.agents.meta.meta_test import Drift

    w1, w2 = jnp.asarray(params["w1"]), jnp.asarray(params["w2"])
    z = jax.random.normal(jax.random.key(1), w2.shape)
    rand = z * jnp.linalg.norm(w2) / jnp.linalg.norm(z)
    return [Drift("LPO, head negated", "lpo", {"w1": w1, "w2": -w2}),
            Drift("LPO, random head of equal norm", "lpo", {"w1": w1, "w2": rand})]  # fmt: skip


def _write_history(path: str, history: dict) -> None:
    names = list(history)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names)
        for i in range(len(history["generation"])):
            w.writerow([f"{history[n][i]:.6g}" for n in names])


def _write_rows(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _plot(path, result, learned, table, s) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlx.agents.meta import drifts
    from rlx.agents.meta.plotting import drift_heatmaps, fitness_curve

    fig = plt.figure(figsize=(15, 8.5), layout="constrained")
    grid = fig.add_gridspec(2, 6)
    ax = fig.add_subplot(grid[0, :3])
    baselines = {d: table[(ENV, d, 1.0)] for d in ("PPO", "DPO")}
    fitness_curve(ax, result.history, baselines)
    ax.set_title(f"OpenES on LPO, CartPole ({s['population']} candidates x {s['steps']:.0e} steps)")
    ax = fig.add_subplot(grid[0, 3:])
    envs_ = list(dict.fromkeys(e for e, _, _ in table))
    names = list(dict.fromkeys(d for _, d, _ in table))
    width = 0.8 / len(names)
    for j, d in enumerate(names):
        m = [table[(e, d, 1.0)][0] for e in envs_]
        h = [table[(e, d, 1.0)][1] for e in envs_]
        ax.bar(np.arange(len(envs_)) + j * width, m, width, yerr=h, capsize=3, label=d)
    ax.set_xticks(np.arange(len(envs_)) + width * (len(names) - 1) / 2, [e.split("/")[1] for e in envs_])
    ax.set_ylabel(f"final return ({s['test_seeds']} fresh seeds, 95% CI)")
    ax.set_title("meta-test (Acrobot is held out)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    axes = [fig.add_subplot(grid[1, 2 * i : 2 * i + 2]) for i in range(3)]
    drift_heatmaps(axes, [
        ("learned LPO (ES mean)", learned.kind, learned.params, 0.0),
        ("PPO, ε = 0.2", "ppo", None, 0.0),
        ("DPO, α = 2, β = 0.6", "dpo", drifts.init_params("dpo"), 0.0),
    ])  # fmt: skip
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main(run, SCALES, __doc__)
