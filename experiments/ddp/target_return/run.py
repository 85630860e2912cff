"""Experiment (a): "generate a desired return" on the 4x4 grid of ddp.md (Pires et al.
2025, §7.1 style), tabular part: achieved return against requested return for exact
stock-augmented DVI (f = -|x|, c_0 = -target, gamma = 1, H = 16), with deterministic
cells and with Bernoulli cells.

Methods are entries of `METHODS`: `fn(mdp, horizon, targets, scale) -> dict of [T]
arrays (mean, std, abs_error)`; a deep agent (DηN, categorical/quantile heads) and a
target-blind DQN baseline plug in there later and appear as extra curves.
"""

from __future__ import annotations

import csv
import os

import jax
import numpy as np

from rlx.agents.ddp import objectives as O
from rlx.agents.ddp import tabular as T
from rlx.envs.tabular import ddp_grid
from rlx.experiments import main

META = dict(
    name="ddp-target-return",
    paper="Pires et al. 2025, Optimizing Return Distributions with Distributional Dynamic Programming",
    figure="§7.1-style 'generate a desired return' (achieved vs requested return)",
    claim="With the stock, DVI for f = -|x| and c_0 = -target returns the requested target whenever "
          "it is achievable; with stochastic cells it minimises E|G - target|.",
    expected="Deterministic grid: achieved == requested for every achievable target (error 0); "
             "otherwise the nearest achievable return; the curve saturates at the largest achievable return (28).",
)

HORIZON = 16
SCALES = {"smoke": dict(targets=(-8, 30)), "cpu": dict(targets=(-16, 40)), "paper": dict(targets=(-16, 40))}


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


METHODS = {"exact DVI (tabular)": exact_dvi}
PANELS = {"deterministic cells": lambda: ddp_grid(False), "Bernoulli cells": lambda: ddp_grid(True)}


def run(scale: str = "smoke", out_dir: str | None = None) -> dict:
    cfg = SCALES[scale]
    out_dir = out_dir or os.path.join("results", META["name"])
    os.makedirs(out_dir, exist_ok=True)
    targets = np.arange(cfg["targets"][0], cfg["targets"][1] + 1)
    rows, curves = [], {}
    for panel, make in PANELS.items():
        mdp = make()
        for method, fn in METHODS.items():
            res = fn(mdp, HORIZON, targets, scale)
            curves[(panel, method)] = res
            for i, t in enumerate(targets):
                rows.append(dict(panel=panel, method=method, target=int(t), mean_return=res["mean"][i],
                                 std_return=res["std"][i], mean_abs_error=res["abs_error"][i]))
    with open(os.path.join(out_dir, f"{META['name']}.csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _plot(curves, targets, os.path.join(out_dir, f"{META['name']}.png"))
    det = curves[("deterministic cells", "exact DVI (tabular)")]
    ber = curves[("Bernoulli cells", "exact DVI (tabular)")]
    achievable = achievable_returns(ddp_grid(False), HORIZON)
    hit = np.isin(targets, achievable)
    nearest = np.min(np.abs(targets[:, None] - achievable[None, :]), axis=1)
    return {
        "deterministic_targets_achievable": int(hit.sum()),
        "deterministic_max_abs_error_on_achievable_targets": float(np.max(det["abs_error"][hit])),
        "deterministic_max_excess_over_nearest_achievable": float(np.max(det["abs_error"] - nearest)),
        "deterministic_max_return": float(np.max(det["mean"])),
        "bernoulli_mean_abs_error_on_deterministic_achievable_targets": float(np.mean(ber["abs_error"][hit])),
    }


def achievable_returns(mdp, horizon):
    """Every return some action sequence gets in a deterministic grid (forward sets)."""
    succ, rew, term = (np.asarray(x) for x in (mdp.successors, mdp.successor_rewards, mdp.terminal))
    frontier, done = {(int(np.argmax(np.asarray(mdp.initial))), 0.0)}, set()
    for _ in range(horizon):
        nxt = set()
        for s, g in frontier:
            for a in range(succ.shape[1]):
                s2, g2 = int(succ[s, a, 0]), g + float(rew[s, a, 0])
                (done if term[s2] else nxt).add((s2, g2))
        frontier = nxt
    return np.array(sorted({g for _, g in frontier | done}))


def _plot(curves, targets, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(PANELS)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), sharey=True)
    for ax, panel in zip(axes, panels):
        ax.plot(targets, targets, "k:", lw=1, label="achieved = requested")
        for method in METHODS:
            res = curves[(panel, method)]
            ax.plot(targets, res["mean"], "o-", ms=3, label=f"{method}: mean return")
            ax.fill_between(targets, res["mean"] - res["std"], res["mean"] + res["std"], alpha=0.25)
            ax.plot(targets, res["abs_error"], "--", label=f"{method}: E|G - target|")
        ax.set_title(f"4x4 grid, {panel}")
        ax.set_xlabel("requested return (c_0 = -target)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("achieved return (mean ± std)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(run, SCALES, __doc__)
