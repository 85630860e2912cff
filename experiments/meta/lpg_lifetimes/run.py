"""TA-LPG against LPG across agent lifetimes (Jackson et al. 2024, the LPG half): meta-train
both rules with OpenES on procedural grid worlds whose agents live a log-uniform number of
updates, then train fresh agents on held-out levels at fixed lifetimes, some outside the
meta-training range, and compare their normalised final returns (return / the level's
exact optimum).

Every ES candidate trains a fresh tabular agent for each level's full lifetime; the ± pairs
of a generation share their levels. Both rules start from the same meta-network, whose π̂
head is zero (the agent's policy stays uniform: "untrained" below). A2C, trained on the
same held-out levels for the same lifetimes, is the hand-designed reference.

Writes `lpg-lifetimes.png` (ES fitness per generation; held-out return against lifetime)
and `lpg-lifetimes.csv` (one row per rule x lifetime x batch of held-out levels), and the
meta-networks for meta-testing on other envs (`rlx.agents.meta.meta_test`): `lpg.npz` (the
LPG ES mean, as a 5-input network), `ta_lpg.npz` (the TA-LPG ES mean) and
`untrained_ta_lpg.npz` (the common start).
"""

from __future__ import annotations

import os

import rlx

rlx.use_every_cpu_core()  # before jax starts: candidates run on every core

import csv  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from rlx.experiments import main  # noqa: E402

META = dict(
    name="lpg-lifetimes",
    paper="Jackson et al. 2024, Discovering Temporally-Aware Reinforcement Learning Algorithms (ICLR)",
    figure="LPG vs TA-LPG: held-out grid-world return against agent lifetime",
    claim="TA-LPG, which sees n/N and log N, beats LPG, and generalises across lifetimes; "
          "ES (full lifetimes) discovers schedules that meta-gradients do not.",
    expected="paper scale: TA-LPG above LPG at every lifetime. cpu scale: both ES means rise above "
             "the untrained rule; the budget is too small to claim the TA-vs-LPG ordering.",
    headline="ta_lpg_minus_lpg_mean",
    budget={"smoke": "about 30 s", "cpu": "about 2.5 min on 2 CPU cores", "mid": "about 7 min on 2 CPU cores", "paper": "GPU"},
)  # fmt: skip

SCALES = {
    "smoke": dict(max_size=3, max_objects=1, sizes=(2, 3), episode_length=(5, 15), lifetime=(3, 8), envs=2, steps=4,
                  meta_hidden=4, population=2, generations=1, levels=1, test_lifetimes=(4, 8),
                  sigma=0.1, lr=0.01),
    "cpu": dict(max_size=5, max_objects=2, sizes=(3, 5), episode_length=(10, 40), lifetime=(10, 60), envs=4, steps=10,
                meta_hidden=16, population=16, generations=60, levels=4, test_lifetimes=(5, 15, 45, 135),
                sigma=0.1, lr=0.01, eval_every=5, eval_seeds=8),
    # The claim test: the cpu levels with the paper's lifetime range, 5 test lifetimes spanning
    # it, 5 ES seeds, 32 x 4 held-out levels per ES seed; TA-LPG - LPG paired by ES seed and level.
    "mid": dict(max_size=5, max_objects=2, sizes=(3, 5), episode_length=(10, 40), lifetime=(10, 250), envs=4, steps=10,
                meta_hidden=16, population=32, generations=40, levels=4, test_lifetimes=(10, 25, 60, 130, 250),
                sigma=0.1, lr=0.01, eval_every=10, eval_seeds=8, es_seeds=5),
    # The papers' setting (Jackson et al. 2023, 2024): sizes 4-10, 1-5 objects, 15 walls, lifetimes 10-250, GRU 256, σ 0.1, lr 1e-2.
    "paper": dict(max_size=10, max_objects=5, sizes=(4, 10), episode_length=(20, 750), lifetime=(10, 250), envs=64,
                  steps=20, meta_hidden=256, population=64, generations=1000, levels=8,
                  test_lifetimes=(10, 30, 100, 250, 750), sigma=0.1, lr=0.01, eval_every=10, eval_seeds=16),
}  # fmt: skip


def setup(s: dict):
    from rlx.agents.meta import lpg
    from rlx.envs import meta_grid as mg

    env = mg.MetaGrid(s["max_size"], s["max_objects"])
    walls = {3: 1, 5: 4, 10: 15}[s["max_size"]]
    dist = mg.GridDistribution(min_size=s["sizes"][0], max_size=s["max_size"], max_objects=s["max_objects"],
                               walls=walls, episode_length=s["episode_length"], lifetime=s["lifetime"])  # fmt: skip
    common = dict(num_envs=s["envs"], num_steps=s["steps"], meta_hidden=s["meta_hidden"],
                  max_lifetime=max(max(s["test_lifetimes"]), s["lifetime"][1]))  # fmt: skip
    return env, dist, common, lpg


def run(scale: str = "smoke", out_dir: str | None = None) -> dict:
    import jax
    import jax.numpy as jnp

    from rlx.agents.meta.es import ESConfig, MetaTask, MetaTrainer, save_params
    s = SCALES[scale]
    out_dir = out_dir or os.path.join("results", META["name"])
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    env, dist, common, lpg = setup(s)
    es = ESConfig(population_size=s["population"], generations=s["generations"], sigma=s["sigma"], lr=s["lr"],
                  eval_every=s.get("eval_every", 0), eval_seeds=s.get("eval_seeds", 1))  # fmt: skip
    curves, timing, rows = {}, {}, []
    runs = 2 * s.get("es_seeds", 1) * es.generations * es.population_size * s["levels"]
    print(f"lpg-lifetimes at scale {scale}: 2 rules x {s.get('es_seeds', 1)} ES seeds x {es.generations} generations "
          f"x {es.population_size} candidates x {s['levels']} levels = {runs:,} agent lifetimes of "
          f"{s['lifetime'][0]}-{s['lifetime'][1]} updates x {s['envs'] * s['steps']} env steps", flush=True)  # fmt: skip
    lifetimes = s["test_lifetimes"]
    P = es.population_size
    # One compiled program serves both rules and the held-out test: LPG is the TA-LPG network
    # with its two TA inputs multiplied by 0 (`time_inputs`, a traced field; the weights
    # reading them then have no effect), and the lifetime is traced too.
    init = jax.jit(lpg.init_params, static_argnums=(1, 2))(jax.random.key(0), True, s["meta_hidden"])
    cfg = lpg.LPGConfig(**common, temporal=True, lpg_params=init)
    task = MetaTask("grid", lpg.make_task_train(env, cfg, dist, s["levels"]), cfg, None)
    trainer = MetaTrainer([task], "lpg_params", init, es, progress=scale != "smoke")
    means, finals = {}, {}
    es_seeds = s.get("es_seeds", 1)
    for name, ta in (("LPG", 0.0), ("TA-LPG", 1.0)):
        for k in range(es_seeds):  # ES seed k: the same ES noise and levels for both rules
            trainer.es = es.replace(seed=k)
            trainer.context = [(cfg.replace(time_inputs=ta), None)]
            result = trainer.run()
            if k == 0:
                curves[name], timing[name], means[name] = result.history, result.timings, result.mean
                finals[name] = result.final_mean_fitness
            means[(name, k)] = result.mean
    # LPG ran as the TA-LPG network with its TA inputs zeroed: saved without the GRU rows
    # that read them, it is the same rule as a plain 5-input LPG network.
    save_params(os.path.join(out_dir, "lpg.npz"), lpg.without_time_inputs(means["LPG"]))
    save_params(os.path.join(out_dir, "ta_lpg.npz"), means["TA-LPG"])
    save_params(os.path.join(out_dir, "untrained_ta_lpg.npz"), init)
    # Held out: P batches of `levels` levels each, drawn from keys never used by the ES; one
    # call scores one rule on all of them (every slot holds the same θ, each its own key).
    keys = jnp.stack([jax.random.fold_in(jax.random.key(10**6), b) for b in range(P)])[:, None]  # [P, 1]
    contenders = [(r, k, means[(r, k)], ta) for r, ta in (("LPG", 0.0), ("TA-LPG", 1.0)) for k in range(es_seeds)]
    contenders.append(("untrained", 0, init, 1.0))
    for name, k, theta, ta in contenders:
        thetas = jax.tree.map(lambda x: jnp.stack([x] * P), theta)
        for n in lifetimes:
            trainer.context = [(cfg.replace(lifetime=int(n), time_inputs=ta), None)]
            scores = trainer.evaluate(keys, thetas)[:, 0]
            rows += [dict(rule=name, es_seed=k, lifetime=n, batch=b, normalised_return=float(v))
                     for b, v in enumerate(scores)]  # fmt: skip
    if scale != "smoke":  # A2C on the same held-out levels (its own compile)
        a2c = lpg.LPGConfig(**common, update_rule="a2c")
        a2c_train = jax.jit(jax.vmap(lambda k, c: lpg.make_task_train(env, a2c, dist, s["levels"])(k, c)[1]
                                     ["episode_return"][0], (0, None)))  # fmt: skip
        for n in lifetimes:
            scores = a2c_train(keys[:, 0], a2c.replace(lifetime=int(n)))
            rows += [dict(rule="A2C", es_seed=0, lifetime=n, batch=b, normalised_return=float(v))
                     for b, v in enumerate(scores)]  # fmt: skip
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    name = META["name"]
    with open(os.path.join(out_dir, f"{name}.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    table = {r: {n: float(np.mean([x["normalised_return"] for x in rows if x["rule"] == r and x["lifetime"] == n]))
                 for n in s["test_lifetimes"]} for r in rules}  # fmt: skip
    diffs = ta_minus_lpg(rows, lifetimes, es_seeds)
    _plot(os.path.join(out_dir, f"{name}.png"), curves, table, rows, s)
    gens = es.generations
    steps = {k: gens * s["population"] / max(v["run_s"], 1e-9) for k, v in timing.items()}
    return {
        "held_out_return": {r: {n: round(v, 3) for n, v in t.items()} for r, t in table.items()},
        # TA-LPG - LPG on the same held-out levels, paired by ES seed: per lifetime, and the
        # mean over lifetimes (the headline of a claim test, with its interval and verdict).
        "ta_lpg_minus_lpg": {n: diffs[n] for n in lifetimes},
        "ta_lpg_minus_lpg_mean": diffs["mean"]["mean"],
        "interval": [diffs["mean"]["low"], diffs["mean"]["high"]],
        "verdict": diffs["mean"]["verdict"],
        "es_seeds": es_seeds,
        # The ES mean scored on fixed keys (eval_seeds x levels fixed levels) every eval_every
        # generations, and after the last: the curve that should rise.
        "es_mean_fitness": {k: [round(float(v), 3) for v in np.append(c["mean_fitness"][np.isfinite(c["mean_fitness"])],
                                                                       np.mean(finals[k]))]
                            for k, c in curves.items() if finals[k] is not None},  # fmt: skip
        "es_population_fitness_first_last": {k: (round(float(c["fitness_mean"][0]), 3), round(float(c["fitness_mean"][-1]), 3))
                                             for k, c in curves.items()},  # fmt: skip
        "candidate_runs_per_s": {k: round(v, 2) for k, v in steps.items()},
        "compile_s": {k: round(v["compile_s"], 1) for k, v in timing.items()},
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def ta_minus_lpg(rows: list[dict], lifetimes, es_seeds: int) -> dict:
    """TA-LPG − LPG held-out return per lifetime and averaged over lifetimes: the mean, a
    nested bootstrap 95% interval (ES seeds, then level batches within a seed) and the
    verdict for the claim "TA-LPG above LPG". With one ES seed the interval is over
    held-out levels only and says nothing about another ES run: no verdict then."""
    from rlx.stats import difference_test

    def grid(rule, n):  # [es_seeds, batches]
        return np.array([[x["normalised_return"] for x in rows if x["rule"] == rule and x["lifetime"] == n
                          and x["es_seed"] == k] for k in range(es_seeds)])  # fmt: skip

    out = {}
    ta = {n: grid("TA-LPG", n) for n in lifetimes}
    lp = {n: grid("LPG", n) for n in lifetimes}
    ta["mean"], lp["mean"] = np.mean([ta[n] for n in lifetimes], 0), np.mean([lp[n] for n in lifetimes], 0)
    for n in (*lifetimes, "mean"):
        t = difference_test(ta[n], lp[n], "greater", nested=True, min_units=3)
        out[n] = {k: round(v, 4) if isinstance(v, float) else v for k, v in t.items()}
    return out


def _plot(path, curves, table, rows, s) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlx.plotting import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ax = axes[0]
    for name, c in curves.items():
        (line,) = ax.plot(c["generation"], c["fitness_mean"], "o-", label=f"{name}: population mean")
        ok = np.isfinite(c["mean_fitness"])
        if ok.any():
            ax.plot(c["generation"][ok], c["mean_fitness"][ok], "s--", color=line.get_color(), label=f"{name}: ES mean")
    ax.set_xlabel("ES generation")
    ax.set_ylabel("fitness (return / optimum, fresh levels)")
    ax.set_title(f"OpenES, {s['population']} candidates, {s['levels']} levels per generation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    lifetimes = list(s["test_lifetimes"])
    for name in table:
        m, h = [], []
        for n in lifetimes:
            v = np.array([x["normalised_return"] for x in rows if x["rule"] == name and x["lifetime"] == n])
            m.append(v.mean())
            h.append(1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0)
        ax.errorbar(lifetimes, m, yerr=h, marker="o", capsize=3, label=name)
    ax.axvspan(*s["lifetime"], color="grey", alpha=0.15, label="meta-training lifetimes")
    ax.set_xscale("log")
    ax.set_xlabel("agent lifetime (updates)")
    ax.set_ylabel(f"held-out return / optimum ({s['population']} x {s['levels']} levels, 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    main(run, SCALES, __doc__)
