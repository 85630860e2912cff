"""LPG trained by OpenES against LPG trained by meta-gradients, in one harness (Jackson et
al. 2024's premise): the same grid-world levels, inner agent and rule network, the same
untrained start, and about the same number of agent rollouts in meta-training; then fresh
agents trained by each final rule on the same held-out levels.

ES (`rlx.agents.meta.es`) scores every candidate on full agent lifetimes; meta-gradient
LPG (`rlx.agents.meta.lpg_metagrad`, Oh et al. 2020's objective) back-propagates through
K = 5 unrolled updates and carries agents across meta-steps. Seed k seeds both (ES noise
and levels; meta-gradient agents and levels), and rule k of each is paired with rule k of
the other on the held-out levels. ES − meta-gradient gets a nested bootstrap interval (seeds,
then levels) and a verdict for the claim "ES is higher".

Writes `lpg-es-vs-metagrad.png` (meta-training curves; held-out return per seed),
`lpg-es-vs-metagrad.csv` (one row per method x seed x held-out level).
"""

from __future__ import annotations

import os

import rlx

rlx.use_every_cpu_core()  # before jax starts: candidates run on every core

import time  # noqa: E402

import numpy as np  # noqa: E402

from rlx.experiments import main  # noqa: E402

META = dict(
    name="lpg-es-vs-metagrad",
    paper="Jackson et al. 2024, Discovering Temporally-Aware Reinforcement Learning Algorithms (ICLR)",
    figure="LPG discovered by evolution strategies against LPG trained by meta-gradients, held-out grid worlds",
    claim="Evolution strategies over full agent lifetimes discover update rules that truncated "
          "meta-gradients do not: ES-trained LPG is at least as good as meta-gradient LPG on held-out levels.",
    expected="ES-LPG - meta-gradient-LPG >= 0 on held-out levels (the paper's premise for TA-LPG). At the mid scale "
             "(5 seeds, about 2e5 agent rollouts per method and seed) a paired test of that difference.",
    headline="es_minus_metagrad",
    budget={"smoke": "about 40 s", "cpu": "about 4 min on 2 CPU cores", "mid": "about 6 min on 2 CPU cores",
            "paper": "GPU"},
)  # fmt: skip

# The levels, agent and rule of the meta-gradient slow test. Below the paper scale the two methods get
# about the same number of agent rollouts in meta-training: ES generations x population x levels x
# the mean lifetime, against meta-steps x agents x (K + 1).
SCALES = {
    "smoke": dict(max_size=3, max_objects=1, sizes=(2, 3), episode_length=(4, 12), lifetime=(3, 8), envs=2, steps=4,
                  meta_hidden=4, population=2, generations=2, levels=1, agents=2, meta_steps=4, chunk=2,
                  test_levels=4, seeds=1),
    "cpu": dict(max_size=4, max_objects=2, sizes=(3, 4), episode_length=(10, 30), lifetime=(10, 40), envs=4, steps=10,
                meta_hidden=16, population=16, generations=40, levels=4, agents=8, meta_steps=1150, chunk=50,
                test_levels=64, seeds=2),
    "mid": dict(max_size=4, max_objects=2, sizes=(3, 4), episode_length=(10, 30), lifetime=(10, 40), envs=4, steps=10,
                meta_hidden=16, population=16, generations=150, levels=4, agents=8, meta_steps=4300, chunk=100,
                test_levels=128, seeds=5),
    # Sizes of the papers' runs: GRU 256, 64 envs x 20 steps, lifetimes 10-250; ES population 1024 for 2500
    # generations (groove README line 84), meta-gradients with 512 agents for 3e4 steps (parse_args.py lines 32-38).
    "paper": dict(max_size=10, max_objects=5, sizes=(4, 10), episode_length=(20, 750), lifetime=(10, 250), envs=64,
                  steps=20, meta_hidden=256, population=1024, generations=2500, levels=1, agents=512,
                  meta_steps=30_000, chunk=100, test_levels=256, seeds=3),
}  # fmt: skip
MG_LR = 1e-3  # the meta-gradient's Adam lr: the slow test's, 10x GROOVE's 1e-4 for these short runs
DIRECTION = "greater"  # the claim: ES - meta-gradient > 0


def mean_lifetime(low: int, high: int) -> float:
    """The mean of a log-uniform integer draw on [low, high] (continuous approximation)."""
    return (high - low) / np.log(high / low) if high > low else float(low)


def run(scale: str = "smoke", out_dir: str | None = None) -> dict:
    import jax

    from rlx.agents.meta import lpg
    from rlx.agents.meta import lpg_metagrad as lm
    from rlx.agents.meta.es import ESConfig, MetaTask, MetaTrainer
    from rlx.envs import meta_grid as mg
    from rlx.experiments import write_csv
    from rlx.stats import difference_test, nested_paired_difference_ci

    s = SCALES[scale]
    out_dir = out_dir or os.path.join("results", META["name"])
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    env = mg.MetaGrid(s["max_size"], s["max_objects"])
    walls = {3: 1, 4: 2, 10: 15}[s["max_size"]]
    dist = mg.GridDistribution(min_size=s["sizes"][0], max_size=s["max_size"], max_objects=s["max_objects"],
                               walls=walls, episode_length=s["episode_length"], lifetime=s["lifetime"])  # fmt: skip
    n_bar = mean_lifetime(*s["lifetime"])
    es_rollouts = s["generations"] * s["population"] * s["levels"] * n_bar  # one per agent update
    mg_rollouts = s["meta_steps"] * s["agents"] * (lm.MetaGradConfig().unroll + 1)  # K updates + the scored rollout
    print(f"lpg-es-vs-metagrad at scale {scale}: {s['seeds']} seeds; per seed ES {s['generations']} generations x "
          f"{s['population']} candidates x {s['levels']} levels (about {es_rollouts:,.0f} agent rollouts), meta-gradients "
          f"{s['meta_steps']} steps x {s['agents']} agents (about {mg_rollouts:,.0f})", flush=True)  # fmt: skip
    init = jax.jit(lpg.init_params, static_argnums=(1, 2))(jax.random.key(0), False, s["meta_hidden"])
    cfg = lpg.LPGConfig(num_envs=s["envs"], num_steps=s["steps"], meta_hidden=s["meta_hidden"],
                        max_lifetime=s["lifetime"][1], lpg_params=init)  # fmt: skip
    held = jax.jit(mg.sample_levels, static_argnums=(1, 2))(jax.random.key(10**6), dist, s["test_levels"])
    evaluate = lpg.make_evaluate(env, cfg)
    eval_key = jax.random.key(2024)  # the same agent keys for every rule on every held-out level

    es = ESConfig(population_size=s["population"], generations=s["generations"], sigma=0.1, lr=0.01, eval_every=0)
    trainer = MetaTrainer([MetaTask("grid", lpg.make_task_train(env, cfg, dist, s["levels"]), cfg, None)],
                          "lpg_params", init, es, progress=scale != "smoke")  # fmt: skip
    scores = {"untrained": evaluate(eval_key, cfg, held)}
    curves, wall = {"ES": [], "meta-gradient": []}, {"ES": 0.0, "meta-gradient": 0.0}
    es_scores, mg_scores = [], []
    for k in range(s["seeds"]):
        t = time.perf_counter()
        trainer.es = es.replace(seed=k)
        result = trainer.run()
        wall["ES"] += time.perf_counter() - t
        curves["ES"].append(result.history["fitness_mean"])
        es_scores.append(evaluate(eval_key, cfg.replace(lpg_params=result.mean), held))
        t = time.perf_counter()
        mcfg = lm.MetaGradConfig(num_agents=s["agents"], meta_steps=s["meta_steps"], chunk=s["chunk"], lr=MG_LR, seed=k)
        out = lm.MetaGradTrainer(env, cfg, dist, init, mcfg, progress=scale != "smoke").run()
        wall["meta-gradient"] += time.perf_counter() - t
        curves["meta-gradient"].append(out.history["meta_loss"])
        mg_scores.append(evaluate(eval_key, cfg.replace(lpg_params=out.params), held))
        print(f"seed {k}: held-out ES {np.mean(es_scores[-1]):.3f}, meta-gradient {np.mean(mg_scores[-1]):.3f}", flush=True)
    es_scores, mg_scores = np.asarray(es_scores), np.asarray(mg_scores)  # [seeds, test_levels]
    test = difference_test(es_scores, mg_scores, DIRECTION, nested=True, min_units=3)
    vs_untrained = {n: nested_paired_difference_ci(v, np.broadcast_to(scores["untrained"], v.shape))
                    for n, v in (("ES", es_scores), ("meta-gradient", mg_scores))}  # fmt: skip

    rows = [dict(method="untrained", seed=0, level=i, normalised_return=float(v)) for i, v in enumerate(scores["untrained"])]
    for name, v in (("ES", es_scores), ("meta-gradient", mg_scores)):
        rows += [dict(method=name, seed=k, level=i, normalised_return=float(x)) for k in range(v.shape[0])
                 for i, x in enumerate(v[k])]  # fmt: skip
    name = META["name"]
    write_csv(os.path.join(out_dir, f"{name}.csv"), rows)
    _plot(os.path.join(out_dir, f"{name}.png"), curves, es_scores, mg_scores, scores["untrained"], s)
    return {
        "held_out_return": {"ES": round(float(es_scores.mean()), 4), "meta-gradient": round(float(mg_scores.mean()), 4),
                            "untrained": round(float(np.mean(scores["untrained"])), 4)},  # fmt: skip
        "held_out_return_per_seed": {"ES": es_scores.mean(1).round(4).tolist(), "meta-gradient": mg_scores.mean(1).round(4).tolist()},
        "es_minus_metagrad": round(test["mean"], 4),
        "interval": [round(test["low"], 4), round(test["high"], 4)],
        "verdict": test["verdict"],
        "minus_untrained_interval": {n: [round(float(a), 4), round(float(b), 4)] for n, (a, b) in vs_untrained.items()},
        "agent_rollouts_per_seed": {"ES": round(es_rollouts), "meta-gradient": round(mg_rollouts)},
        "meta_training_wall_s": {n: round(v, 1) for n, v in wall.items()},
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def _plot(path, curves, es_scores, mg_scores, untrained, s) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlx.plotting import save_figure

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for c in curves["ES"]:
        axes[0].plot(np.arange(len(c)), c, alpha=0.7)
    axes[0].set_xlabel("ES generation")
    axes[0].set_ylabel("population fitness (return / optimum)")
    axes[0].set_title(f"OpenES, {s['population']} candidates x {s['levels']} levels, one line per seed")
    for c in curves["meta-gradient"]:
        axes[1].plot(np.arange(len(c)), c, alpha=0.7)
    axes[1].set_xlabel("meta-gradient step")
    axes[1].set_ylabel("meta-objective L(η)")
    axes[1].set_title(f"meta-gradients, {s['agents']} agents, K = 5")
    seeds = np.arange(es_scores.shape[0])
    half = lambda v: 1.96 * v.std(1, ddof=1) / np.sqrt(v.shape[1]) if v.shape[1] > 1 else 0  # noqa: E731
    axes[2].errorbar(seeds - 0.1, es_scores.mean(1), yerr=half(es_scores), fmt="o", capsize=3, label="ES")
    axes[2].errorbar(seeds + 0.1, mg_scores.mean(1), yerr=half(mg_scores), fmt="s", capsize=3, label="meta-gradient")
    axes[2].axhline(float(np.mean(untrained)), color="grey", ls=":", label="untrained")
    axes[2].set_xticks(seeds)
    axes[2].set_xlabel("seed")
    axes[2].set_ylabel(f"held-out return / optimum ({es_scores.shape[1]} levels, 95% CI)")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    main(run, SCALES, __doc__)
