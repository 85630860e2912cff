"""Experiment (b): CVaR_tau of the return against tau on a slippery grid (ddp.md,
"Experiments to reproduce" 2), tabular part, plus policy maps at a few stocks.

Env: `risky_grid` (3x5; the direct route slips into lava w.p. slip/2 per step, the
detour over the top row is safe but 2 steps longer), gamma = 1, H = 10, integer rewards,
so stock DVI runs in exact mode. Methods (`METHODS`, each `fn(mdp, H, tau) -> law of G`):
- stock DVI: f = min(x, 0) with the Rockafellar–Uryasev outer max over c_0;
- risk-neutral optimum (f = x, c_0 = 0);
- naive CVaR-greedy without a stock (greedy on CVaR of the return-to-go).
A deep agent adds an entry later. CVaR of every law is computed exactly.
"""

from __future__ import annotations

import csv
import os

import jax
import numpy as np

from rlx import distributional as dist
from rlx.agents.ddp import objectives as O
from rlx.agents.ddp import tabular as T
from rlx.envs.tabular import risky_grid
from rlx.envs.tabular.grids import RISKY_GRID
from rlx.experiments import main

META = dict(
    name="ddp-cvar",
    paper="Pires et al. 2025, Optimizing Return Distributions with Distributional Dynamic Programming",
    figure="CVaR_tau against tau (ddp.md experiment 2), tabular part",
    claim="Stock-augmented DVI with the outer max over c_0 attains the optimal CVaR_tau for every tau; "
          "the risk-neutral optimum and naive CVaR-greedy without a stock do worse at small tau.",
    expected="stock DVI >= both baselines at every tau, strictly better at small tau; equal to the "
             "risk-neutral optimum at tau = 1.",
)

HORIZON = 10
TAUS = (0.05, 0.1, 0.25, 0.5, 1.0)
SCALES = {"smoke": dict(slip=0.2), "cpu": dict(slip=0.2), "paper": dict(slip=0.2)}


def _grid(mdp):
    return T.exact_grid(mdp, HORIZON)


def _law(mdp, policy, grid, c0):
    nu = T.evaluate_policy(mdp, policy, grid, 1.0, horizon=HORIZON)
    return np.asarray(T.start_distribution(mdp, nu, grid, c0), np.float64)


def stock_dvi(mdp, tau):
    grid = _grid(mdp)
    result, value, c0 = T.solve(mdp, O.cvar(tau), grid, 1.0, horizon=HORIZON, exact=True)
    return _law(mdp, result.policy, grid, c0), float(value)


def risk_neutral(mdp, tau):
    grid = _grid(mdp)
    result, _, _ = T.solve(mdp, O.identity(), grid, 1.0, horizon=HORIZON, exact=True)
    return _law(mdp, result.policy, grid, 0.0), None


def naive_cvar_greedy(mdp, tau):
    grid = _grid(mdp)
    pol, _ = jax.jit(T.dvi_without_stock, static_argnums=(1, 4))(
        mdp, lambda z, p: dist.cvar(z, p, tau), grid, 1.0, HORIZON)
    pol = np.broadcast_to(np.asarray(pol)[:, :, None], pol.shape + (grid.num_stocks,))
    return _law(mdp, pol, grid, 0.0), None


METHODS = {"stock DVI (tabular)": stock_dvi, "risk-neutral optimum": risk_neutral,
           "naive CVaR-greedy, no stock": naive_cvar_greedy}


def run(scale: str = "smoke", out_dir: str | None = None) -> dict:
    cfg = SCALES[scale]
    out_dir = out_dir or os.path.join("results", META["name"])
    os.makedirs(out_dir, exist_ok=True)
    mdp = risky_grid(slip=cfg["slip"])
    atoms = np.asarray(_grid(mdp).atoms, np.float64)
    rows, table = [], {}
    for method, fn in METHODS.items():
        for tau in TAUS:
            law, dvi_value = fn(mdp, tau)
            cv = _cvar(atoms, law, tau)
            table[(method, tau)] = cv
            rows.append(dict(method=method, tau=tau, cvar=cv, mean=float(law @ atoms),
                             dvi_value=np.nan if dvi_value is None else dvi_value))
    with open(os.path.join(out_dir, f"{META['name']}.csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    maps = policy_maps(mdp)
    _plot(table, maps, os.path.join(out_dir, f"{META['name']}.png"))
    s, rn, nv = (np.array([table[(m, t)] for t in TAUS]) for m in METHODS)
    return {
        "cvar_by_tau": {m: [round(table[(m, t)], 4) for t in TAUS] for m in METHODS},
        "stock_dvi_ge_baselines_all_tau": bool(np.all(s >= rn - 1e-6) and np.all(s >= nv - 1e-6)),
        "gain_over_risk_neutral_at_tau_0.05": float(s[0] - rn[0]),
        "gain_over_naive_at_tau_0.05": float(s[0] - nv[0]),
    }


def _cvar(atoms, probs, tau):
    order = np.argsort(atoms)
    x, p = atoms[order], probs[order]
    cdf = np.cumsum(p)
    return float(np.sum(np.clip(np.minimum(cdf, tau) - (cdf - p), 0, None) * x) / tau)


def policy_maps(mdp, stocks=(-9.0, -5.0, -1.0, 3.0)):
    """Stock DVI's first-step policy of the inner problem `E min(c + G, 0)` at a few
    stocks c: a low stock (behind: must earn a lot) vs a high one (ahead)."""
    grid = _grid(mdp)
    result, _, _ = T.solve(mdp, O.expected_shortfall(0.0), grid, 1.0, horizon=HORIZON, exact=True)
    pol = np.asarray(result.policy[0])  # [S, J]
    cs = np.asarray(grid.stocks)
    return {c: pol[:, int(np.argmin(np.abs(cs - c)))] for c in stocks}


def _plot(table, maps, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(14, 4.8))
    ax = fig.add_subplot(1, 2, 1)
    for method in METHODS:
        ax.plot(TAUS, [table[(method, t)] for t in TAUS], "o-", label=method)
    ax.set_xscale("log")
    ax.set_xticks(TAUS, [str(t) for t in TAUS])
    ax.set_xlabel("tau")
    ax.set_ylabel("CVaR_tau(G)")
    ax.set_title(f"Risky slippery grid, H={HORIZON}")
    ax.legend()
    rows, cols = len(RISKY_GRID), len(RISKY_GRID[0])
    arrows = {0: (0, 0.35), 1: (0, -0.35), 2: (-0.35, 0), 3: (0.35, 0)}
    for k, (c, pol) in enumerate(maps.items()):
        a = fig.add_subplot(2, 4, 3 + (k // 2) * 4 + (k % 2))
        for r in range(rows):
            for col in range(cols):
                ch = RISKY_GRID[r][col]
                color = {"H": "tomato", "G": "gold"}.get(ch, "white")
                a.add_patch(plt.Rectangle((col - 0.5, rows - 1 - r - 0.5), 1, 1, fc=color, ec="grey"))
                if ch in "HG":
                    continue
                dx, dy = arrows[int(pol[r * cols + col])]
                a.arrow(col - dx / 2, rows - 1 - r - dy / 2, dx, dy, head_width=0.15, length_includes_head=True)
        a.set_xlim(-0.5, cols - 0.5)
        a.set_ylim(-0.5, rows - 0.5)
        a.set_aspect("equal")
        a.set_xticks([])
        a.set_yticks([])
        a.set_title(f"stock c = {c:g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(run, SCALES, __doc__)
