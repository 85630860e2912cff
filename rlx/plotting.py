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


# Below this many members a band is their range, not a confidence interval: a bootstrap
# over 2-4 values has too few distinct resamples to mean anything at 95%.
MIN_MEMBERS_FOR_CI = 5


def band(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """`(mean, low, high, what the band is)` over members for `y: [P, U]`: a 95% bootstrap
    interval of the mean with at least `MIN_MEMBERS_FOR_CI` members, their min-max range
    with fewer, no band (low = high = mean) with one."""
    n = y.shape[0]
    if n >= MIN_MEMBERS_FOR_CI:
        mean, lo, hi = bootstrap_ci(y)
        return mean, lo, hi, f"n={n}, 95% bootstrap CI"
    with np.errstate(all="ignore"):
        mean = np.nanmean(y, 0)
        if n == 1:
            return mean, mean, mean, "n=1, no band"
        return mean, np.nanmin(y, 0), np.nanmax(y, 0), f"n={n}, band: min-max (too few for a CI)"


def learning_curve(
    path: str,
    x: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str] | None = None,
    title: str = "",
    xlabel: str = "env steps",
    ylabel: str = "episode return",
) -> None:
    """Mean over members with a band (see `band`: a 95% bootstrap CI from 5 members, the
    min-max range below), one line per group; each legend entry says what its band is.

    x, y: `[P, U]`; groups: a label per member (members with the same label are pooled).
    """
    labels = list(groups) if groups is not None else [""] * np.shape(y)[0]
    curves = {}
    for label in dict.fromkeys(labels):
        rows = [i for i, g in enumerate(labels) if g == label]
        curves[label] = (np.asarray(x)[rows], np.asarray(y)[rows])
    learning_curves(path, curves, title, xlabel, ylabel)


def learning_curves(
    path: str,
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    title: str = "",
    xlabel: str = "env steps",
    ylabel: str = "episode return",
) -> None:
    """One line per group, `curves[label] = (x [P, U], y [P, U])`; groups may differ in P
    and U. Each line is the mean over its members with `band`'s band, and its legend
    entry says what the band is."""
    plt = _matplotlib()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, (x, y) in curves.items():
        mean, lo, hi, what = band(forward_fill(y))
        xs = np.nanmean(np.asarray(x, float), 0)
        (line,) = ax.plot(xs, mean, label=f"{label} ({what})" if label else f"mean ({what})")
        if np.shape(y)[0] > 1:
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.25, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    save_figure(fig, path)


def aggregate_intervals(path: str, labels: Sequence[str], described: Sequence[dict], xlabel: str = "score") -> None:
    """Mean, IQM and median per group as points with their intervals (rliable's interval
    plot): `described[i]` is `rlx.compare.describe`'s dict for `labels[i]`. A group too
    small for an interval shows its min-max range as a dotted line, and says so."""
    plt = _matplotlib()
    names = ("mean", "iqm", "median")
    fig, axes = plt.subplots(1, 3, figsize=(10, 0.5 + 0.45 * len(labels) + 0.8), dpi=120, sharey=True)
    ys = np.arange(len(labels))[::-1]
    for ax, name in zip(axes, names):
        for y, d in zip(ys, described):
            if not d["n"]:
                continue
            ci = d.get(f"{name}_ci") or [None, None]
            if ci[0] is not None:
                ax.plot(ci, [y, y], color="C0", lw=4, alpha=0.5, solid_capstyle="butt")
            else:
                ax.plot([d["min"], d["max"]], [y, y], color="C1", lw=1.5, ls=":")
            ax.plot([d[name]], [y], "o", color="C0" if ci[0] is not None else "C1")
        ax.set_title({"iqm": "IQM"}.get(name, name))
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(ys, [f"{label} (n={d['n']})" for label, d in zip(labels, described)])
    fig.suptitle(f"bars: 95% stratified bootstrap CI; dotted: min-max (groups of fewer than {MIN_MEMBERS_FOR_CI})",
                 fontsize=8)  # fmt: skip
    save_figure(fig, path)


def save_figure(fig, path: str, dpi: float | None = None) -> None:
    """Lay `fig` out tightly, write it to `path` all at once (a killed process leaves no
    half-written image) and close it; `dpi` None keeps the figure's own."""
    from rlx.runfiles import atomic_save

    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=dpi))
    _matplotlib().close(fig)
