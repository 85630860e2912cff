"""One figure and one CSV from several `rlx train` runs of the DQN family: the training
episode return (metrics.csv's `episode_return`, the mean over envs of each env's last
finished episode) against env steps, averaged into bins so the CSV stays small.

    python scripts/plot_dqn_minatar.py --run c51=runs/c51-breakout --run qrdqn=runs/qr-breakout \\
        --out docs/figures/dqn_minatar_breakout --title "Breakout-MinAtar"

Writes <out>.csv (algo, seed, env_steps, episode_return; one row per seed and bin) and
<out>.png (per algorithm: the mean over seeds with a 95% bootstrap band, and each seed
as a thin line).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np


def binned(x: np.ndarray, y: np.ndarray, num_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of `y` over `num_bins` consecutive, equal-count slices of one member's updates
    (NaNs, updates before any episode ended, are skipped). Each bin is placed at its last
    update's env steps. `x, y: [U]` -> `[num_bins]` each."""
    edges = np.linspace(0, len(x), num_bins + 1).astype(int)
    xs, ys = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi <= lo:
            continue
        seg = y[lo:hi]
        xs.append(x[hi - 1])
        ys.append(np.nanmean(seg) if np.isfinite(seg).any() else np.nan)
    return np.asarray(xs), np.asarray(ys)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, metavar="ALGO=DIR", help="a label and an rlx run directory")
    p.add_argument("--out", required=True, help="path without extension for the .png and .csv")
    p.add_argument("--bins", type=int, default=100, help="points per seed")
    p.add_argument("--title", default="")
    args = p.parse_args(argv)

    from rlx.logging import read_metrics
    from rlx.plotting import _matplotlib, band, forward_fill

    rows = []
    curves: dict[str, tuple[np.ndarray, np.ndarray, list[int]]] = {}
    for item in args.run:
        algo, run_dir = item.split("=", 1)
        data = read_metrics(os.path.join(run_dir, "metrics.csv"))
        xs, ys, seeds = [], [], []
        for m in np.unique(data["member"]).astype(int):
            sel = data["member"] == m
            seed = int(data["seed"][sel][0])
            bx, by = binned(data["env_steps"][sel], data["episode_return"][sel], args.bins)
            xs.append(bx)
            ys.append(by)
            seeds.append(seed)
            rows += [(algo, seed, int(a), "" if np.isnan(b) else round(float(b), 3)) for a, b in zip(bx, by)]
        curves[algo] = (np.stack(xs), forward_fill(np.stack(ys)), seeds)

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["algo", "seed", "env_steps", "episode_return"])
        w.writerows(rows)

    plt = _matplotlib()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for algo, (x, y, seeds) in curves.items():
        mean, lo, hi, what = band(y)
        xm = x.mean(0)
        (line,) = ax.plot(xm, mean, label=f"{algo} (mean; {what})", linewidth=2)
        if len(seeds) > 1:
            ax.fill_between(xm, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        for row in range(len(seeds)):
            ax.plot(x[row], y[row], color=line.get_color(), linewidth=0.6, alpha=0.6)
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel("training episode return")
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out + ".png")
    plt.close(fig)
    print(f"wrote {args.out}.png and {args.out}.csv ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
