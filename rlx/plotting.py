"""Figures a researcher would rather look at than read."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def forward_fill(y: np.ndarray) -> np.ndarray:
    """Fill NaNs (updates in which no episode had finished yet) with the last value. `[P, U]`."""
    y = np.array(y, dtype=float)
    for row in y:
        last = np.nan
        for i, v in enumerate(row):
            if np.isnan(v):
                row[i] = last
            else:
                last = v
    return y


def bootstrap_ci(y: np.ndarray, num_resamples: int = 1000, level: float = 0.95, seed: int = 0):
    """Mean over members and a bootstrap confidence interval of that mean. `y: [P, U]`."""
    rng = np.random.default_rng(seed)
    p = y.shape[0]
    idx = rng.integers(0, p, size=(num_resamples, p))
    with np.errstate(all="ignore"):
        means = np.nanmean(y[idx], axis=1)  # [R, U]
        lo = np.nanpercentile(means, 100 * (1 - level) / 2, axis=0)
        hi = np.nanpercentile(means, 100 * (1 + level) / 2, axis=0)
        return np.nanmean(y, 0), lo, hi


def learning_curve(
    path: str,
    x: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str] | None = None,
    title: str = "",
    xlabel: str = "env steps",
    ylabel: str = "episode return",
) -> None:
    """Mean and 95% bootstrap band over members, one line per group.

    x, y: `[P, U]`; groups: a label per member (members with the same label are pooled).
    """
    plt = _matplotlib()
    y = forward_fill(y)
    labels = list(groups) if groups is not None else [""] * y.shape[0]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label in dict.fromkeys(labels):
        rows = [i for i, g in enumerate(labels) if g == label]
        mean, lo, hi = bootstrap_ci(y[rows])
        xs = np.nanmean(x[rows], 0)
        n = len(rows)
        name = f"{label} (n={n})" if label else f"mean of {n} member{'s' * (n > 1)}, 95% CI"
        (line,) = ax.plot(xs, mean, label=name)
        if n > 1:
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.25, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    save_figure(fig, path)


def save_figure(fig, path: str, dpi: float | None = None) -> None:
    """Lay `fig` out tightly, write it to `path` all at once (a killed process leaves no
    half-written image) and close it; `dpi` None keeps the figure's own."""
    from rlx.runfiles import atomic_save

    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=dpi))
    _matplotlib().close(fig)
