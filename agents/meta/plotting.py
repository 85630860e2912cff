"""Figures for meta-learned objectives: drift heatmaps over (r, A) and ES fitness curves."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rlx.agents.meta import drifts


def drift_grid(
    kind: str, params: Any, ratios: np.ndarray, advantages: np.ndarray, clip_eps: float = 0.2, progress: float = 0.0
) -> np.ndarray:
    """D(r, A) on a grid: `[len(advantages), len(ratios)]` (rows are A, columns r)."""
    r, a = np.meshgrid(np.asarray(ratios, np.float32), np.asarray(advantages, np.float32))
    d = drifts.drift(kind, params, jnp.asarray(r.ravel()), jnp.asarray(a.ravel()), clip_eps, progress)
    return np.asarray(jax.device_get(d)).reshape(r.shape)


def drift_heatmaps(
    axes: Sequence[Any],
    panels: Sequence[tuple[str, str, Any, float]],
    ratios: np.ndarray | None = None,
    advantages: np.ndarray | None = None,
    clip_eps: float = 0.2,
) -> None:
    """One heatmap per `(title, kind, params, progress)` panel on `axes`, sharing a colour
    scale so drifts can be compared by eye. r runs along x (`ratios` `[R]`), A along y
    (`advantages` `[N]`)."""
    ratios = np.linspace(0.5, 1.5, 101) if ratios is None else ratios
    advantages = np.linspace(-2.0, 2.0, 81) if advantages is None else advantages
    grids = [drift_grid(k, p, ratios, advantages, clip_eps, n) for _, k, p, n in panels]
    vmax = max(float(np.nanpercentile(g, 99)) for g in grids) or 1.0
    extent = (ratios[0], ratios[-1], advantages[0], advantages[-1])
    for i, (ax, (title, *_), g) in enumerate(zip(axes, panels, grids)):
        im = ax.imshow(g, origin="lower", aspect="auto", extent=extent, vmin=0.0, vmax=vmax, cmap="viridis")
        ax.axvline(1.0, color="w", lw=0.6, alpha=0.6)
        ax.axhline(0.0, color="w", lw=0.6, alpha=0.6)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("r = π_new / π_old")
        if i == 0:
            ax.set_ylabel("A (normalised)")
    ax.figure.colorbar(im, ax=list(axes), shrink=0.8, label="D(r, A)")


def fitness_curve(ax: Any, history: dict, baselines: dict[str, tuple[float, float]] | None = None, scale: float = 1.0) -> None:
    """ES fitness per generation: the population's mean (band: ± std over candidates), the
    ES mean's fitness on fixed keys (band: ± std over seeds), and horizontal baselines
    `{name: (mean, 95% CI half-width)}`. Values are multiplied by `scale` (e.g. a
    reference return, to plot raw returns)."""
    g = history["generation"]
    m, s = history["fitness_mean"] * scale, history["fitness_std"] * scale
    (line,) = ax.plot(g, m, label="population mean (± std)")
    ax.fill_between(g, m - s, m + s, color=line.get_color(), alpha=0.2, linewidth=0)
    if "mean_fitness" in history and np.isfinite(history["mean_fitness"]).any():
        ok = np.isfinite(history["mean_fitness"])
        mf, ms = history["mean_fitness"][ok] * scale, history["mean_fitness_std"][ok] * scale
        (line,) = ax.plot(g[ok], mf, "o-", label="ES mean, fixed seeds (± std)")
        ax.fill_between(g[ok], mf - ms, mf + ms, color=line.get_color(), alpha=0.2, linewidth=0)
    for i, (name, (mean, half)) in enumerate((baselines or {}).items()):
        color = f"C{i + 2}"
        ax.axhline(mean * scale, color=color, ls="--", lw=1, label=f"{name} (95% CI)")
        if np.isfinite(half):
            ax.axhspan((mean - half) * scale, (mean + half) * scale, color=color, alpha=0.1)
    ax.set_xlabel("ES generation")
    ax.set_ylabel("fitness (final return)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
