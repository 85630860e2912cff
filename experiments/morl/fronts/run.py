"""Experiment (a) of issue 5: Pareto fronts and an HV / EU / SP table for C-MORL against
the linear-scalarisation MO-PPO population (C-MORL's stage 1 alone) trained for the same
number of env steps, on Deep Sea Treasure (convex and concave) and Fruit Tree.

For each env and seed: C-MORL runs (stage 1 + rounds); its training env steps are
counted; the linear population then trains from scratch with as many updates per member
as make the same total, and is evaluated the same way (deterministic policies,
discounted with the env's `mo_spec.gamma`). Indicators use each env's pinned reference
point and weight set. On the DST envs the true front is known, so the table also has
IGD and the number of true points found.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from rlx import envs
from rlx.agents.morl import cmorl, moppo
from rlx.agents.morl import indicators as ind
from rlx.experiments import main, write_csv

META = dict(
    name="morl-fronts",
    paper="Liu et al. 2025, C-MORL: Multi-Objective RL through Efficient Discovery of Pareto Front (ICLR)",
    figure="Pareto fronts and HV/EU/SP table, C-MORL vs the linear MO-PPO population at equal env steps",
    claim="Constrained extension of a stage-1 population finds a front with larger HV than the linear "
          "population given the same env steps, including points no weighted sum can reach (concave DST).",
    expected="C-MORL HV >= linear HV on every env; on concave DST C-MORL finds >= 4 of the 10 true points "
             "where the linear population finds only the 2 extremes.",
    headline="hv_ratio_cmorl_over_linear",
    budget={"smoke": "about 1 min on 2 CPU cores", "cpu": "about 15 min on 2 CPU cores",
            "cpu-halfcheetah": "about 40 min on one CPU core",
            "cpu-hopper": "about 27 min on one CPU core", "paper": "a GPU; adds seeds"},
)  # fmt: skip

DST = dict(num_envs=16, num_steps=64, num_minibatches=4, update_epochs=4, lr=1e-3, gamma=0.99, ent_coef=0.01,
           normalize_obs=True)  # fmt: skip
TINY = dict(num_envs=8, num_steps=32, num_minibatches=2, update_epochs=2, lr=3e-3, gamma=0.99, ent_coef=0.01,
            normalize_obs=True, hidden=(32, 32), critic_hidden=(32, 32))  # fmt: skip

# env name -> (env kwargs, MO-PPO overrides, C-MORL overrides)
ENVS = {
    "dst-convex": ("rlx/deep-sea-treasure", {}, dict(reward_scale=(0.1, 1.0)), dict(beta=0.9)),
    # beta 0.5: on the concave front a neighbour is up to 39% lower in treasure (discounted),
    # out of reach of the paper's 10% relaxation.
    "dst-concave": ("rlx/deep-sea-treasure-concave", {}, dict(reward_scale=(0.01, 1.0)), dict(beta=0.5)),
    "fruit-tree-5": ("rlx/fruit-tree", {"depth": 5}, dict(reward_scale=0.1), dict(beta=0.9, init_divisions=1)),
    # brax (generalized backend), C-MORL's PPO settings; too slow for 2 CPU cores.
    "mo-halfcheetah": ("mo-brax/halfcheetah-2d", {}, dict(num_envs=8, num_steps=512, num_minibatches=32,
                       update_epochs=10, gamma=0.995, ent_coef=0.0, lr=3e-4, hidden=(64, 64),
                       critic_hidden=(64, 64), reward_scale=(0.1, 1.0)), dict(beta=0.9)),
    # The same env on brax's spring backend: about 5.4k env steps/s for a 6-policy population
    # on one CPU core, so 5 seeds fit a CPU budget (the `cpu-halfcheetah` scale).
    "mo-halfcheetah-spring": ("mo-brax/halfcheetah-2d", {"backend": "spring"}, dict(num_envs=8, num_steps=512,
                              num_minibatches=32, update_epochs=10, gamma=0.995, ent_coef=0.0, lr=3e-4,
                              hidden=(64, 64), critic_hidden=(64, 64), reward_scale=(0.1, 1.0)),
                              dict(beta=0.9, eval_every=5)),
    # MO-Hopper (2 objectives: forward speed and jump height, each with the healthy reward and
    # the control cost), spring backend: its physics runs about 5x faster than halfcheetah's
    # on one CPU core, so the budget goes to more updates.
    "mo-hopper-spring": ("mo-brax/hopper-2d", {"backend": "spring"}, dict(num_envs=8, num_steps=512,
                         num_minibatches=32, update_epochs=10, gamma=0.995, ent_coef=0.0, lr=3e-4,
                         hidden=(64, 64), critic_hidden=(64, 64), reward_scale=(0.1, 0.1)),
                         dict(beta=0.9, eval_every=5)),
}


def _make(env_id, **kwargs):
    if env_id.startswith("mo-brax/"):
        from rlx.envs.mo.brax_mo import make_mo_brax

        return make_mo_brax(env_id.split("/", 1)[1], **kwargs)
    return envs.make(env_id, **kwargs)

SCALES = {
    "smoke": dict(envs=("dst-convex",), seeds=1, ppo=TINY, init_updates=6, rounds=1, num_select=2,
                  constrained_updates=2),
    "cpu": dict(envs=("dst-convex", "dst-concave", "fruit-tree-5"), seeds=3, ppo=DST, init_updates=100,
                rounds=3, num_select=5, constrained_updates=10),
    # C-MORL against the continued stage-1 population on MO-HalfCheetah over 5 seeds, at a
    # budget one CPU core runs in about 40 min: 6 x 30 stage-1 updates of 4096 steps (737k
    # env steps), then 2 rounds of 3 policies x 2 objectives x 5 constrained updates.
    "cpu-halfcheetah": dict(envs=("mo-halfcheetah-spring",), seeds=5, ppo=DST, init_updates=30, rounds=2,
                            num_select=3, constrained_updates=5),
    # The same comparison on MO-Hopper: 6 x 60 stage-1 updates (1.47M env steps), then 2
    # rounds of 3 policies x 2 objectives x 5 constrained updates.
    "cpu-hopper": dict(envs=("mo-hopper-spring",), seeds=5, ppo=DST, init_updates=60, rounds=2,
                       num_select=3, constrained_updates=5),
    "paper": dict(envs=("dst-convex", "dst-concave", "fruit-tree-5", "mo-halfcheetah"), seeds=5, ppo=DST,
                  init_updates=300,
                  rounds=5, num_select=6, constrained_updates=20),
}  # fmt: skip


def _row(env_name, method, seed, points, spec, front, env_steps):
    row = dict(env=env_name, method=method, seed=seed, env_steps=env_steps, **cmorl.indicators(points, spec))
    if front is not None:
        dist = np.abs(points[:, None, :] - front[None, :, :]).max(-1) if len(points) else np.zeros((0, len(front)))
        row["true_points_found"] = len({int(j) for j in np.argwhere(dist < 0.05)[:, 1]})
        row["igd"] = ind.igd(points, front) if len(points) else float("nan")
    return row


def run(scale: str = "smoke", out_dir: str | None = None) -> dict:
    s = SCALES[scale]
    out_dir = out_dir or os.path.join("results", META["name"])
    os.makedirs(out_dir, exist_ok=True)
    rows, fronts = [], {}
    start = time.perf_counter()
    for name in s["envs"]:
        env_id, env_kwargs, ppo_over, c_over = ENVS[name]
        env, params = _make(env_id, **env_kwargs)
        spec, d = env.mo_spec, env.reward_dim
        true_front = env.pareto_front(spec.gamma) if getattr(env, "pareto_front_exact", False) else None
        cfg = moppo.MOPPOConfig(weights=np.full(d, 1.0 / d), **{**s["ppo"], **ppo_over})
        ccfg = cmorl.CMORLConfig(**{**dict(init_divisions=5, init_updates=s["init_updates"], rounds=s["rounds"],
                                           num_select=s["num_select"], constrained_updates=s["constrained_updates"]),
                                    **c_over})  # fmt: skip
        for seed in range(s["seeds"]):
            result = cmorl.run(env, params, cfg, ccfg, seed=seed)
            stage1 = result.history[0]
            rows.append(dict(env=name, method="C-MORL stage 1 only", seed=seed, env_steps=stage1["env_steps"],
                             **{k: stage1[k] for k in ("hypervolume", "expected_utility", "sparsity", "cardinality")}))
            rows.append(_row(name, "C-MORL", seed, result.points, spec, true_front, result.env_steps))
            updates = cmorl.equal_budget_updates(ccfg, cfg, d, result.env_steps)
            agent, state, pop, _ = cmorl.train_linear(env, params, cfg, ccfg, seed, updates=updates)
            evaluate = cmorl.evaluator(agent, env, 1, spec.gamma)
            disc, _, _ = evaluate(agent.policy_params(state), pop.cfg, params,
                                  jax.random.split(jax.random.key(seed + 99), len(pop.members)))  # fmt: skip
            linear = np.asarray(disc, np.float64)
            linear_front = linear[np.all(linear > spec.ref_point, 1)]
            linear_env_steps = len(pop.members) * updates * cfg.num_envs * cfg.num_steps
            rows.append(_row(name, "linear MO-PPO, equal steps", seed, linear_front, spec, true_front, linear_env_steps))
            print(f"[{time.perf_counter() - start:7.0f} s] {name} seed {seed}: HV C-MORL {rows[-2]['hypervolume']:.6g}, "
                  f"linear {rows[-1]['hypervolume']:.6g}, stage 1 {rows[-3]['hypervolume']:.6g}", flush=True)  # fmt: skip
            if seed == 0:
                fronts[name] = dict(cmorl=result.points, linear=linear_front, true=true_front,
                                    history=result.history, linear_hv=rows[-1]["hypervolume"], d=d)  # fmt: skip
    write_csv(os.path.join(out_dir, f"{META['name']}.csv"), rows)
    _plot(fronts, os.path.join(out_dir, f"{META['name']}.png"))
    return _summary(rows)


def _summary(rows) -> dict:
    out, ratios = {}, []
    for name in dict.fromkeys(r["env"] for r in rows):
        for method in ("C-MORL", "linear MO-PPO, equal steps", "C-MORL stage 1 only"):
            sel = [r for r in rows if r["env"] == name and r["method"] == method]
            hv = np.mean([r["hypervolume"] for r in sel])
            out[f"{name} {method} HV"] = round(float(hv), 3)
            if "true_points_found" in sel[0]:
                out[f"{name} {method} true points"] = [r["true_points_found"] for r in sel]
        c = np.mean([r["hypervolume"] for r in rows if r["env"] == name and r["method"] == "C-MORL"])
        lin = np.mean([r["hypervolume"] for r in rows if r["env"] == name and r["method"] == "linear MO-PPO, equal steps"])
        ratios.append(c / lin if lin > 0 else float("inf"))
    out["hv_ratio_cmorl_over_linear"] = round(float(np.min(ratios)), 4)  # the worst env
    return out


# Objective names of the 2-D envs, for the plot's axes.
AXES = {
    "dst-convex": ("treasure", "time penalty"),
    "dst-concave": ("treasure", "time penalty"),
    "mo-halfcheetah": ("forward velocity", "control cost"),
    "mo-halfcheetah-spring": ("forward velocity", "control cost"),
    "mo-hopper-spring": ("forward velocity", "jump height"),
}


def _plot(fronts, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlx.plotting import save_figure

    n = len(fronts)
    fig, axes = plt.subplots(1, n, figsize=(5.0 * n, 4.0), dpi=120, squeeze=False)
    for ax, (name, f) in zip(axes[0], fronts.items()):
        if f["d"] == 2:
            if f["true"] is not None:
                ax.plot(*f["true"].T, "k+", ms=12, label="true front")
            if len(f["linear"]):
                ax.plot(*f["linear"].T, "o", mfc="none", ms=9, label="linear MO-PPO, equal steps")
            if len(f["cmorl"]):
                ax.plot(*f["cmorl"].T, ".", ms=8, label="C-MORL")
            xlabel, ylabel = AXES.get(name, ("objective 1", "objective 2"))
            ax.set_xlabel(f"{xlabel} (discounted)")
            ax.set_ylabel(f"{ylabel} (discounted)")
        else:
            steps = [h["env_steps"] for h in f["history"]]
            ax.plot(steps, [h["hypervolume"] for h in f["history"]], "o-", label="C-MORL archive")
            ax.axhline(f["linear_hv"], color="C1", ls="--", label="linear MO-PPO, equal steps")
            ax.set_xlabel("env steps")
            ax.set_ylabel("hypervolume")
        ax.set_title(f"{name} (seed 0)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)


if __name__ == "__main__":
    main(run, SCALES, __doc__)
