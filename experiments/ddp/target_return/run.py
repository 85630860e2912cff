"""Experiment (a): "generate a desired return" on a 4x4 grid world (Pires et al.
2025, §7.1 style): achieved return against requested return (f = -|x|, c_0 = -target,
gamma = 1, H = 16), with deterministic cells and with Bernoulli cells, for

- exact stock-augmented DVI (tabular);
- the deep agent DηN (`agents/ddp/deep.py`) with a categorical and with a quantile head:
  one network per panel, trained with c_0 ~ U[-max target, -min target] per episode and
  relabelled stocks, then evaluated greedily at c_0 = -target for every target;
- plain DQN, which ignores the target (a flat curve).

`TABULAR` methods are `fn(mdp, horizon, targets, scale) -> dict of [T] arrays (mean,
std, abs_error)`; `LEARNED` ones are `fn(mdps {panel: mdp}, targets, scale) -> {panel:
that dict}` and train both panels (x seeds) in one compiled program.
"""

from __future__ import annotations

import csv
import os
import sys

if __name__ == "__main__":  # `python experiments/ddp/target_return/run.py`: import experiments.ddp.common
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

import jax
import jax.numpy as jnp
import numpy as np

from experiments.ddp import common
from rlx.agents import dqn
from rlx.agents.ddp import deep
from rlx.agents.ddp import objectives as O
from rlx.agents.ddp import tabular as T
from rlx.envs.tabular import achievable_returns, ddp_grid, to_env
from rlx.evaluation import evaluate
from rlx.experiments import main

META = dict(
    name="ddp-target-return",
    paper="Pires et al. 2025, Optimizing Return Distributions with Distributional Dynamic Programming",
    figure="§7.1-style 'generate a desired return' (achieved vs requested return)",
    claim="With the stock, DVI for f = -|x| and c_0 = -target returns the requested target whenever "
          "it is achievable; with stochastic cells it minimises E|G - target|. One deep stock-aware agent "
          "(DηN) serves every target; DQN cannot.",
    expected="Deterministic grid: achieved == requested for every achievable target (error 0); "
             "otherwise the nearest achievable return; the curve saturates at the largest achievable return (28). "
             "DηN within 0.5 of >= 90% of the achievable targets; DQN flat.",
    headline="deep_c51_deterministic_fraction_within_0.5",
    budget={"smoke": "about 1 min on 2 CPU cores (tiny networks, 3k env steps)",
            "cpu": "about 10 min on 2 CPU cores (1e5 env steps per agent and panel)",
            "paper": "1e6 env steps per agent and panel, 4 seeds (not run here)"},
)

HORIZON = 16
# smoke: no warm-up phase (its scan is a compile of its own) and no quantile head, to
# keep CI's compile time down; the code paths are the same as at cpu scale.
_TINY = dict(total_steps=16 * 64, learning_starts=0, buffer_size=1024, hidden=(32,))
SCALES = {
    "smoke": dict(targets=(-8, 30), deep=dict(_TINY, head_hidden=(32,)), dqn=_TINY, seeds=1, episodes=4,
                  skip=("DηN, quantile head",)),
    "cpu": dict(targets=(-16, 40), deep=dict(total_steps=100_000), dqn=dict(total_steps=100_000), seeds=1, episodes=100),
    "paper": dict(targets=(-16, 40), deep=dict(total_steps=1_000_000, buffer_size=200_000),
                  dqn=dict(total_steps=1_000_000, buffer_size=200_000), seeds=4, episodes=400),
}


def exact_dvi(mdp, horizon, targets, scale):
    """One DVI over the stock grid answers every target: c_0 = -target is a grid stock."""
    grid = T.exact_grid(mdp, horizon, c0_range=(-max(targets), -min(targets)))
    result, _, _ = T.solve(mdp, O.target(0.0), grid, 1.0, horizon=horizon, exact=True)
    nu = jax.jit(T.evaluate_policy, static_argnames="horizon")(mdp, result.policy, grid, 1.0, horizon=horizon)
    atoms = np.asarray(grid.atoms)
    out = dict(mean=[], std=[], abs_error=[])
    for t in targets:
        p = np.asarray(T.start_distribution(mdp, nu, grid, -float(t)), np.float64)
        mean = p @ atoms
        out["mean"].append(mean)
        out["std"].append(np.sqrt(max(p @ (atoms - mean) ** 2, 0.0)))
        out["abs_error"].append(p @ np.abs(atoms - t))
    return {k: np.asarray(v) for k, v in out.items()}


def _summarise(returns, targets):
    """returns `[P, S, T, N]` (panels, seeds, targets, episodes) -> per panel dict of [T]."""
    out = []
    for r in np.asarray(returns, np.float64):
        r = np.moveaxis(r, 1, 0).reshape(len(targets), -1)  # [T, S*N]
        out.append(dict(mean=r.mean(1), std=r.std(1), abs_error=np.abs(r - targets[:, None]).mean(1)))
    return out


# Both panels share one compiled program per agent: the deterministic grid is padded to
# the Bernoulli grid's two outcomes per (s, a), and every config has the same static
# fields (97 atoms: spacing 0.5 on [-16, 32] for the deterministic grid, 1 on [-32, 64]).
NUM_ATOMS = 97


def _panels(mdps):
    mdps = {k: common.pad_outcomes(m, 2) for k, m in mdps.items()}
    env, _ = to_env(next(iter(mdps.values())), max_steps=HORIZON)
    return mdps, env, [to_env(m, max_steps=HORIZON)[1] for m in mdps.values()]


def deep_method(head):
    def fn(mdps, targets, scale):
        cfg_scale = SCALES[scale]
        mdps, env, env_params = _panels(mdps)
        c0_range = (-float(max(targets)), -float(min(targets)))
        cfgs = [deep.config_for_mdp(m, HORIZON, O.target(0.0), head=head, c0_range=c0_range, stock_spacing=1.0,
                                    **({"num_atoms": NUM_ATOMS} if head == "c51" else {}), **cfg_scale["deep"])
                for m in mdps.values()]
        agent = deep.make_agent(env, cfgs[0])
        c0s = -jnp.asarray(targets, jnp.float32)
        n = cfg_scale["episodes"]

        def evaluate_targets(state, c, ep, key):
            keys = jax.random.split(key, len(targets))
            return jax.vmap(lambda c0, k: deep.evaluate(agent, state.params, c, env, ep, k, c0, n)["return"])(c0s, keys)

        returns, _, seconds = common.train_and_evaluate(agent, cfgs, env_params, cfg_scale["seeds"], evaluate_targets)
        TIMINGS[f"DηN {head}"] = seconds
        return dict(zip(mdps, _summarise(returns.reshape((len(cfgs), cfg_scale["seeds"]) + returns.shape[1:]), targets)))

    return fn


def dqn_baseline(mdps, targets, scale):
    """Risk-neutral DQN: its greedy return does not depend on the requested target."""
    cfg_scale = SCALES[scale]
    mdps, env, env_params = _panels(mdps)
    cfg = common.dqn_config(**cfg_scale["dqn"])
    agent = dqn.make_agent(env, cfg)
    n = cfg_scale["episodes"]

    def evaluate_once(state, c, ep, key):
        r = evaluate(agent, state.params, c, env, ep, key, n, max_steps=HORIZON)["return"]
        return jnp.broadcast_to(r, (len(targets), n))

    returns, _, seconds = common.train_and_evaluate(agent, [cfg] * len(mdps), env_params, cfg_scale["seeds"], evaluate_once)
    TIMINGS["DQN"] = seconds
    return dict(zip(mdps, _summarise(returns.reshape((len(mdps), cfg_scale["seeds"]) + returns.shape[1:]), targets)))


TABULAR = {"exact DVI (tabular)": exact_dvi}
LEARNED = {"DηN, categorical head": deep_method("c51"), "DηN, quantile head": deep_method("qr"),
           "DQN (ignores the target)": dqn_baseline}
METHODS = list(TABULAR) + list(LEARNED)
PANELS = {"deterministic cells": lambda: ddp_grid(False), "Bernoulli cells": lambda: ddp_grid(True)}
TIMINGS: dict = {}


def run(scale: str = "smoke", out_dir: str | None = None) -> dict:
    cfg = SCALES[scale]
    out_dir = out_dir or os.path.join("results", META["name"])
    os.makedirs(out_dir, exist_ok=True)
    targets = np.arange(cfg["targets"][0], cfg["targets"][1] + 1)
    curves = {}
    TIMINGS.clear()
    mdps = {panel: make() for panel, make in PANELS.items()}
    for panel, mdp in mdps.items():
        for method, fn in TABULAR.items():
            curves[(panel, method)] = fn(mdp, HORIZON, targets, scale)
    methods = [m for m in METHODS if m not in cfg.get("skip", ())]
    for method, fn in LEARNED.items():
        if method not in methods:
            continue
        for panel, res in fn(mdps, targets, scale).items():
            curves[(panel, method)] = res
    rows = []
    for panel in PANELS:
        for method in methods:
            res = curves[(panel, method)]
            for i, t in enumerate(targets):
                rows.append(dict(panel=panel, method=method, target=int(t), mean_return=res["mean"][i],
                                 std_return=res["std"][i], mean_abs_error=res["abs_error"][i]))
    with open(os.path.join(out_dir, f"{META['name']}.csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _plot(curves, methods, targets, os.path.join(out_dir, f"{META['name']}.png"))
    det = curves[("deterministic cells", "exact DVI (tabular)")]
    ber = curves[("Bernoulli cells", "exact DVI (tabular)")]
    achievable = achievable_returns(ddp_grid(False), HORIZON)
    hit = np.isin(targets, achievable)
    nearest = np.min(np.abs(targets[:, None] - achievable[None, :]), axis=1)
    within = {m: np.abs(curves[("deterministic cells", m)]["mean"] - targets) <= 0.5 for m in LEARNED if m in methods}
    short = {"DηN, categorical head": "deep_c51", "DηN, quantile head": "deep_qr", "DQN (ignores the target)": "dqn"}
    learned = {}
    for m, key in short.items():
        if m not in methods:
            continue
        learned[f"{key}_deterministic_fraction_within_0.5"] = round(float(np.mean(within[m][hit])), 4)
        learned[f"{key}_bernoulli_mean_abs_error"] = round(float(np.mean(curves[("Bernoulli cells", m)]["abs_error"][hit])), 3)
    learned["dqn_deterministic_return"] = float(np.mean(curves[("deterministic cells", "DQN (ignores the target)")]["mean"]))
    learned["train_seconds"] = {k: round(v, 1) for k, v in TIMINGS.items()}
    return {
        **learned,
        "deterministic_targets_achievable": int(hit.sum()),
        "deterministic_max_abs_error_on_achievable_targets": float(np.max(det["abs_error"][hit])),
        "deterministic_max_excess_over_nearest_achievable": float(np.max(det["abs_error"] - nearest)),
        "deterministic_max_return": float(np.max(det["mean"])),
        "bernoulli_mean_abs_error_on_deterministic_achievable_targets": float(np.mean(ber["abs_error"][hit])),
    }


def _plot(curves, methods, targets, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlx.plotting import save_figure

    panels = list(PANELS)
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5.5), sharey=True)
    for ax, panel in zip(axes, panels):
        ax.plot(targets, targets, "k:", lw=1, label="achieved = requested")
        for k, method in enumerate(methods):
            res = curves[(panel, method)]
            color = f"C{k}"
            ax.plot(targets, res["mean"], "o-", ms=3, color=color, label=f"{method}: mean return")
            ax.fill_between(targets, res["mean"] - res["std"], res["mean"] + res["std"], color=color, alpha=0.15)
            ax.plot(targets, res["abs_error"], "--", color=color, lw=1, label=f"{method}: E|G - target|")
        ax.set_title(f"4x4 grid, {panel}")
        ax.set_xlabel("requested return (c_0 = -target)")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("achieved return (mean ± std)")
    save_figure(fig, path, dpi=120)


if __name__ == "__main__":
    main(run, SCALES, __doc__)
