"""Experiment (b) of issue 5: hyperparameter optimisation for MORL (Felten et al. 2023).

The tuned method is the linear-scalarisation MO-PPO population (6 preferences) on
convex Deep Sea Treasure; a trial's score is its mean hypervolume over training seeds
(reference point (0, -25), discounted returns, gamma 0.99). Bayesian optimisation
(optuna's TPE, batches of trials asked at once) is compared with random search at the
same number of trials; each batch of trials x seeds x preferences is one compiled
population, shared by both searches. The figure shows the best mean HV against
trials; the CSV has every trial.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from rlx import envs
from rlx.agents.morl import hpo, indicators as ind, moppo
from rlx.experiments import main

META = dict(
    name="morl-hpo",
    paper="Felten et al. 2023, Hyperparameter Optimization for Multi-Objective Reinforcement Learning",
    figure="best mean hypervolume against trials, Bayesian optimisation vs random search (cf. their Fig. 2)",
    claim="A Bayesian-optimisation outer loop over the MORL method's hyperparameters, scored by the mean "
          "hypervolume over seeds, beats random search at the same budget.",
    expected="BO's best mean HV >= random search's at the final budget, and reaches the true front's HV "
             "neighbourhood sooner.",
    headline="best_hv_bo_minus_random",
    budget={"smoke": "about 30 s on 2 CPU cores", "cpu": "about 10 min on 2 CPU cores", "paper": "a GPU"},
)  # fmt: skip

SPACE = {
    "lr": hpo.Param(1e-4, 3e-2, log=True),
    "ent_coef": hpo.Param(0.0, 0.1),
    "clip_eps": hpo.Param(0.05, 0.4),
    "gae_lambda": hpo.Param(0.8, 1.0),
}
BASE = dict(num_envs=16, num_steps=64, num_minibatches=4, update_epochs=4, gamma=0.99, normalize_obs=True,
            reward_scale=(0.1, 1.0))  # fmt: skip

SCALES = {
    "smoke": dict(updates=4, trials=4, batch=2, seeds=1, divisions=1, num_envs=4, num_steps=16, search_seeds=1),
    "cpu": dict(updates=40, trials=24, batch=8, seeds=2, divisions=5, num_envs=16, num_steps=64, search_seeds=1),
    "paper": dict(updates=100, trials=100, batch=20, seeds=3, divisions=5, num_envs=16, num_steps=64,
                  search_seeds=3),
}  # fmt: skip


def run(scale: str = "smoke", out_dir: str | None = None) -> dict:
    s = SCALES[scale]
    out_dir = out_dir or os.path.join("results", META["name"])
    os.makedirs(out_dir, exist_ok=True)
    env, params = envs.make("rlx/deep-sea-treasure")
    spec = env.mo_spec
    cfg = moppo.MOPPOConfig(weights=(0.5, 0.5), **{**BASE, "num_envs": s["num_envs"], "num_steps": s["num_steps"],
                            "num_minibatches": min(4, s["num_envs"]),
                            "total_steps": s["updates"] * s["num_envs"] * s["num_steps"]})  # fmt: skip
    evaluator = hpo.TrialEvaluator(env, params, cfg, SPACE, batch_size=s["batch"], seeds=s["seeds"],
                                   divisions=s["divisions"])  # fmt: skip
    rows, curves = [], {}
    methods = [("random search", hpo.random_search), ("BO (optuna TPE)", hpo.optuna_search)]
    try:
        import optuna  # noqa: F401
    except ImportError:  # BO needs optuna; without it only the baseline runs
        methods = methods[:1]
    for method, search in methods:
        for search_seed in range(s["search_seeds"]):
            records = search(evaluator, num_trials=s["trials"], seed=search_seed)
            for r in records:
                rows.append(dict(method=method, search_seed=search_seed, **r))
            curves.setdefault(method, []).append([r["best_hypervolume"] for r in records])
    true_hv = ind.hypervolume(env.pareto_front(spec.gamma), spec.ref_point)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(os.path.join(out_dir, f"{META['name']}.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    _plot(curves, true_hv, s, os.path.join(out_dir, f"{META['name']}.png"))
    best = {m: float(np.mean([c[-1] for c in cs])) for m, cs in curves.items()}
    bo = best.get("BO (optuna TPE)")
    budget_steps = -(-s["trials"] // s["batch"]) * evaluator.env_steps_per_batch
    return {
        "best_mean_hv_random": round(best["random search"], 3),
        "best_mean_hv_bo": round(bo, 3) if bo is not None else "not run: optuna is not installed",
        "best_hv_bo_minus_random": round(bo - best["random search"], 3) if bo is not None else None,
        "true_front_hv": round(true_hv, 3),
        "env_steps_per_search": budget_steps,
        "compile_s": round(evaluator.compile_s, 1),
    }


def _plot(curves, true_hv, s, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlx.plotting import save_figure

    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=120)
    for method, cs in curves.items():
        c = np.asarray(cs)
        x = np.arange(1, c.shape[1] + 1)
        ax.plot(x, c.mean(0), drawstyle="steps-post", label=f"{method} ({c.shape[0]} search seed{'s' * (c.shape[0] > 1)})")
        if c.shape[0] > 1:
            ax.fill_between(x, c.min(0), c.max(0), step="post", alpha=0.2)
    ax.axhline(true_hv, color="k", ls=":", label="true front HV")
    ax.set_xlabel(f"trials (batches of {s['batch']}; {s['seeds']} seeds x preferences each)")
    ax.set_ylabel("best mean hypervolume so far")
    ax.set_title("MO-PPO on convex DST: HPO")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main(run, SCALES, __doc__)
