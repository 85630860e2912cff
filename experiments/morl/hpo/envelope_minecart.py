"""HPO for MORL as Felten et al. (2023) ran it: Envelope Q-learning on Minecart.

A trial is a setting of Envelope's hyperparameters; its score is the mean, over
training seeds (3 in the paper), of the hypervolume (reference point (0, 0, -200))
of the front the trained agent gives on an evenly spaced set of preferences,
from greedy episodes discounted with gamma 0.98. Bayesian optimisation (optuna's
TPE; the paper used W&B's Bayesian sweeps) and random search get the same trials
and, trial for trial, the same training keys, over several search seeds. The best
BO configuration and MORL-Baselines' defaults are then trained on fresh seeds, and
a paired bootstrap interval of their HV difference gives the verdict: "reproduced"
only if it excludes zero in the paper's direction (tuned > default).

Search space: MORL-Baselines' `experiments/hyperparameter_search/configs/envelope.yaml`
(commit b7e723d, 2023-07-17), the paper's sweep, restricted to the fields that
are traced here, so one compiled program trains every trial:

    learning_rate U[1e-4, 1e-3], initial_epsilon U[0.01, 1], final_epsilon U[0.01, 1],
    epsilon_decay_steps U{1..1e5}, tau U[0, 1], target_net_update_freq U{1..1e4},
    max_grad_norm U[0.1, 10], initial/final_homotopy_lambda U[0, 1],
    homotopy_decay_steps U{1..1e5}; fixed: gamma 0.98, net 256x4, batch 32.

Below the paper scale, the three step counts' upper ends shrink with the run
(`total_steps / 1e5` of theirs), so that a decay can finish within a short run.
Not searched, because they shape the program or are not implemented, and held at
MORL-Baselines' defaults: buffer_size (U{1e3..2e6}; here the whole run fits the
buffer), learning_starts (U{1..1000}; here 100), gradient_updates (U{1..10};
here 1 per env step), num_sample_w (U{2..10}; here 4), per_alpha (no prioritised
replay here).
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from rlx import envs
from rlx import population as pop_lib
from rlx import stats
from rlx.agents.morl import envelope, hpo
from rlx.agents.morl import indicators as ind
from rlx.config import stack
from rlx.experiments import main, write_csv
from rlx.pareto import simplex_lattice
from rlx.train import make_train, over_population, resolve_population_mode

META = dict(
    name="morl-hpo-envelope",
    paper="Felten et al. 2023, Hyperparameter Optimization for Multi-Objective Reinforcement Learning",
    figure="Envelope on Minecart: best mean HV against trials (BO vs random search), tuned vs default on "
           "fresh seeds",
    claim="Hyperparameters found by Bayesian optimisation of the mean hypervolume over 3 seeds make Envelope "
          "Q-learning on Minecart clearly better than its default hyperparameters.",
    expected="tuned HV > default HV on fresh seeds (paired interval above 0); BO >= random search",
    headline="tuned_minus_default_hv",
    budget={"smoke": "about 20 s on 2 CPU cores", "cpu": "about 50 min on 2 CPU cores",
            "paper": "100 trials x 3 seeds x 100k env steps (30M env steps per search), a GPU"},
)  # fmt: skip

# (name, low, high, integer): MORL-Baselines' envelope.yaml; step counts scaled below paper scale.
SPACE_SPEC = (
    ("lr", 1e-4, 1e-3, False), ("eps_start", 0.01, 1.0, False), ("eps_end", 0.01, 1.0, False),
    ("eps_decay_steps", 1.0, 1e5, True), ("tau", 0.0, 1.0, False), ("target_update_period", 1.0, 1e4, True),
    ("max_grad_norm", 0.1, 10.0, False), ("homotopy_start", 0.0, 1.0, False), ("homotopy_end", 0.0, 1.0, False),
    ("homotopy_decay_steps", 1.0, 1e5, True),
)  # fmt: skip
STEP_FIELDS = {"eps_decay_steps", "target_update_period", "homotopy_decay_steps"}
#: MORL-Baselines' Envelope defaults (envelope.py lines 88-110), at the sweep's fixed gamma, net and batch.
DEFAULT = dict(lr=3e-4, eps_start=0.01, eps_end=0.01, eps_decay_steps=1.0, tau=1.0, target_update_period=200.0,
               max_grad_norm=1.0, homotopy_start=0.0, homotopy_end=1.0, homotopy_decay_steps=1e12)  # fmt: skip
FIXED = dict(gamma=0.98, batch_size=32, num_sample_w=4, learning_starts=100, utd=1.0)

SCALES = {
    "smoke": dict(total_steps=300, num_envs=1, hidden=(16,), trials=2, batch=2, seeds=1, search_seeds=1,
                  eval_weights=3, eval_episodes=1, episode_cap=100, fresh_seeds=2),
    # The paper's 256x4 network costs ~8 ms per gradient step here; 64x64 fits the hour.
    "cpu": dict(total_steps=30_000, num_envs=1, hidden=(64, 64), trials=6, batch=3, seeds=3, search_seeds=3,
                eval_weights=15, eval_episodes=1, episode_cap=1000, fresh_seeds=9),
    "paper": dict(total_steps=100_000, num_envs=1, hidden=(256, 256, 256, 256), trials=100, batch=10, seeds=3,
                  search_seeds=3, eval_weights=100, eval_episodes=5, episode_cap=1000, fresh_seeds=10),
}  # fmt: skip


def space_for(total_steps: int) -> dict[str, hpo.Param]:
    """The search space; step counts' upper ends times `min(1, total_steps / 1e5)`."""
    scale = min(1.0, total_steps / 1e5)
    return {name: hpo.Param(lo, max(hi * scale, lo + 1.0) if name in STEP_FIELDS else hi)
            for name, lo, hi, _ in SPACE_SPEC}  # fmt: skip


def _rounded(trial: dict) -> dict:
    ints = {name for name, _, _, integer in SPACE_SPEC if integer}
    return {k: (float(round(v)) if k in ints else float(v)) for k, v in trial.items()}


class EnvelopeTrials:
    """Scores batches of `batch_size` trials x `seeds` training seeds as one compiled
    population: each member trains Envelope and evaluates its front (`eval_weights`
    preferences of the Das-Dennis lattice nearest in size). Seed s of every trial uses
    `key(seed_offset + s)`, so trials differ only in their hyperparameters."""

    def __init__(self, env, env_params, cfg: envelope.EnvelopeConfig, space: dict, *, batch_size: int, seeds: int,
                 eval_weights: int, eval_episodes: int, seed_offset: int = 0):  # fmt: skip
        hpo.check_space(cfg, space)
        self.env, self.env_params, self.cfg, self.space = env, env_params, cfg, space
        self.batch_size, self.seeds, self.seed_offset = batch_size, seeds, seed_offset
        self.spec = env.mo_spec
        divisions = 1
        while len(simplex_lattice(env.reward_dim, divisions=divisions + 1)) <= eval_weights:
            divisions += 1
        self.weights = jnp.asarray(simplex_lattice(env.reward_dim, divisions=divisions), jnp.float32)
        size = batch_size * seeds
        self.mesh = pop_lib.make_mesh(pop_lib.default_devices(size))
        self.agent = agent = envelope.make_agent(env, cfg)
        train = make_train(agent, cfg)
        weights, gamma = self.weights, self.spec.gamma

        def member(key, c, env_params):
            state, _ = train(key, c, env_params)
            out = envelope.evaluate_front(agent, agent.policy_params(state), c, env, env_params,
                                          jax.random.fold_in(key, 7), weights, eval_episodes, gamma)  # fmt: skip
            return out["discounted_return"]

        self._fn = jax.jit(over_population(member, self.mesh, resolve_population_mode("auto")))
        self.env_steps_per_batch = size * cfg.total_steps
        self.compile_s = 0.0

    def fronts(self, trials: list[dict], seeds: list[int]) -> np.ndarray:
        """Train and evaluate member i on `trials[i]` with `key(seeds[i])`: fronts
        `[len(trials), W, d]` (discounted). Runs in populations of `batch_size * seeds`
        members (the last one padded), all through the one compiled program."""
        size = self.batch_size * self.seeds
        out = []
        for start in range(0, len(trials), size):
            chunk, keys_chunk = list(trials[start : start + size]), list(seeds[start : start + size])
            n = len(chunk)
            chunk += [chunk[-1]] * (size - n)
            keys_chunk += [keys_chunk[-1]] * (size - n)
            cfgs = pop_lib.shard(stack([self.cfg.replace(**_rounded(t)) for t in chunk]), self.mesh)
            keys = pop_lib.shard(jax.vmap(jax.random.key)(jnp.asarray(keys_chunk)), self.mesh)
            t0 = time.perf_counter()
            if not hasattr(self, "_compiled"):
                self._compiled = self._fn.lower(keys, cfgs, self.env_params).compile()
                self.compile_s = time.perf_counter() - t0
                t0 = time.perf_counter()
            out.append(np.asarray(jax.device_get(self._compiled(keys, cfgs, self.env_params)), np.float64)[:n])
            self.run_s = time.perf_counter() - t0
        return np.concatenate(out)

    def score(self, front: np.ndarray) -> dict:
        """HV, EU and the most (discounted) ore of one front `[W, d]`."""
        return dict(hv=ind.hypervolume(front, self.spec.ref_point),
                    eu=ind.expected_utility(front, self.spec.weights), ore=float(front[:, :2].sum(-1).max()))  # fmt: skip

    def __call__(self, trials: list[dict], first_trial: int = 0) -> list[dict]:
        """Score `trials` (at most `batch_size`), each on training seeds
        `seed_offset + 0 .. seeds-1`. One record per trial, with each seed's HV."""
        trials = [_rounded(t) for t in trials]
        seeds = list(range(self.seed_offset, self.seed_offset + self.seeds))
        fronts = self.fronts([t for t in trials for _ in seeds], seeds * len(trials))
        fronts = fronts.reshape(len(trials), self.seeds, *fronts.shape[1:])
        records = []
        for i, t in enumerate(trials):
            sc = [self.score(fronts[i, s]) for s in range(self.seeds)]
            hv = [x["hv"] for x in sc]
            records.append(dict(trial=first_trial + i, **t, hypervolume=float(np.mean(hv)),
                                hypervolume_std=float(np.std(hv)), expected_utility=float(np.mean([x["eu"] for x in sc])),
                                max_ore=float(np.mean([x["ore"] for x in sc])), seed_hv=hv, batch_run_s=self.run_s))  # fmt: skip
        return records


def run(scale: str = "smoke", out_dir: str | None = None) -> dict:
    s = SCALES[scale]
    out_dir = out_dir or os.path.join("results", META["name"])
    os.makedirs(out_dir, exist_ok=True)
    t_start = time.perf_counter()
    env, params = envs.make("rlx/minecart")
    cfg = envelope.EnvelopeConfig(**FIXED, **DEFAULT, num_envs=s["num_envs"], hidden=s["hidden"],
                                  total_steps=s["total_steps"], buffer_size=s["total_steps"])  # fmt: skip
    params = params.replace(max_steps_in_episode=s["episode_cap"])  # training and evaluation
    space = space_for(s["total_steps"])
    search = EnvelopeTrials(env, params, cfg, space, batch_size=s["batch"], seeds=s["seeds"],
                            eval_weights=s["eval_weights"], eval_episodes=s["eval_episodes"])  # fmt: skip
    rows, curves, best_bo = [], {}, None
    methods = [("random search", hpo.random_search), ("BO (optuna TPE)", hpo.optuna_search)]
    for method, fn in methods:
        for search_seed in range(s["search_seeds"]):
            records = fn(search, num_trials=s["trials"], seed=search_seed)
            for r in records:
                rows.append(dict(phase="search", method=method, search_seed=search_seed,
                                 **{k: v for k, v in r.items() if k != "seed_hv"}))  # fmt: skip
                if method.startswith("BO") and (best_bo is None or r["hypervolume"] > best_bo["hypervolume"]):
                    best_bo = r
            curves.setdefault(method, []).append([r["best_hypervolume"] for r in records])

    # Tuned (BO's best) against the defaults on fresh seeds, paired by seed, through the
    # search's compiled program.
    tuned = {k: best_bo[k] for k in space}
    default_trial = {k: DEFAULT[k] for k in space}
    fresh = list(range(1000, 1000 + s["fresh_seeds"]))
    fronts = search.fronts([tuned] * len(fresh) + [default_trial] * len(fresh), fresh + fresh)
    scores = [search.score(f) for f in fronts]
    hv_t = np.asarray([x["hv"] for x in scores[: len(fresh)]])
    hv_d = np.asarray([x["hv"] for x in scores[len(fresh) :]])
    eu_t = np.asarray([x["eu"] for x in scores[: len(fresh)]])
    eu_d = np.asarray([x["eu"] for x in scores[len(fresh) :]])
    low, high = stats.paired_difference_ci(hv_t, hv_d, reps=5000)
    eu_low, eu_high = stats.paired_difference_ci(eu_t, eu_d, reps=5000)
    for i, (name, trial) in enumerate((("tuned", tuned), ("default", default_trial))):
        for j, seed in enumerate(fresh):
            x = scores[i * len(fresh) + j]
            rows.append(dict(phase="fresh seeds", method=name, seed=seed, hypervolume=x["hv"],
                             expected_utility=x["eu"], max_ore=x["ore"], **_rounded(trial)))  # fmt: skip
    best = {m: np.asarray([c[-1] for c in cs]) for m, cs in curves.items()}
    bo_minus_random = best["BO (optuna TPE)"] - best["random search"]  # paired by search seed
    if len(bo_minus_random) > 1:
        bo_low, bo_high = stats.paired_difference_ci(best["BO (optuna TPE)"], best["random search"], reps=5000)
    else:
        bo_low = bo_high = float(bo_minus_random[0])

    write_csv(os.path.join(out_dir, f"{META['name']}.csv"), rows)
    _plot(curves, hv_t, hv_d, s, os.path.join(out_dir, f"{META['name']}.png"))
    budget = (-(-s["trials"] // s["batch"])) * search.env_steps_per_batch
    return {
        "verdict": stats.verdict(low, high, "greater"),
        "tuned_minus_default_hv": round(float(np.mean(hv_t - hv_d)), 3),
        "paired_ci95": [round(float(low), 3), round(float(high), 3)],
        "tuned_hv_fresh_seeds": round(float(hv_t.mean()), 3),
        "default_hv_fresh_seeds": round(float(hv_d.mean()), 3),
        "fresh_seeds": s["fresh_seeds"],
        "tuned_minus_default_eu": round(float(np.mean(eu_t - eu_d)), 4),
        "eu_paired_ci95": [round(float(eu_low), 4), round(float(eu_high), 4)],
        "max_ore_any_trial": round(float(max(r.get("max_ore", 0.0) for r in rows)), 4),
        "tuned_config": {k: float(f"{v:.4g}") for k, v in tuned.items()},
        "best_mean_hv_bo": round(float(best["BO (optuna TPE)"].mean()), 3),
        "best_mean_hv_random": round(float(best["random search"].mean()), 3),
        "bo_minus_random_ci95": [round(float(bo_low), 3), round(float(bo_high), 3)],
        "bo_vs_random_verdict": stats.verdict(bo_low, bo_high, "greater") if len(bo_minus_random) > 1
        else "one search seed: no interval",
        "search_seeds": s["search_seeds"],
        "trials_per_search": s["trials"],
        "env_steps_per_search": budget,
        "compile_s": round(search.compile_s, 1),
        "wall_s": round(time.perf_counter() - t_start, 1),
    }


def _plot(curves, hv_t, hv_d, s, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlx.plotting import save_figure

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10.0, 4.0), dpi=120)
    for method, cs in curves.items():
        c = np.asarray(cs)
        x = np.arange(1, c.shape[1] + 1)
        ax.plot(x, c.mean(0), drawstyle="steps-post", label=f"{method} ({c.shape[0]} search seeds)")
        if c.shape[0] > 1:
            ax.fill_between(x, c.min(0), c.max(0), step="post", alpha=0.2)
    ax.set_xlabel(f"trials ({s['seeds']} seeds each, {s['total_steps']} env steps per seed)")
    ax.set_ylabel("best mean hypervolume so far")
    ax.set_title("Envelope on Minecart: search")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    for i, (a, b) in enumerate(zip(hv_d, hv_t)):
        bx.plot([0, 1], [a, b], color="0.6", lw=0.8)
    bx.scatter(np.zeros(len(hv_d)), hv_d, label="default")
    bx.scatter(np.ones(len(hv_t)), hv_t, label="tuned (best BO trial)")
    bx.set_xticks([0, 1], ["default", "tuned"])
    bx.set_xlim(-0.5, 1.5)
    bx.set_ylabel("hypervolume, fresh seed")
    bx.set_title(f"{len(hv_t)} fresh seeds, paired")
    bx.grid(alpha=0.3)
    save_figure(fig, path)


if __name__ == "__main__":
    main(run, SCALES, __doc__)
