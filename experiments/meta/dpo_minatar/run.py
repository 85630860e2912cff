"""DPO against PPO on four MinAtar games at one fixed budget (Lu et al. 2022's MinAtar claim).

Both train the same PPO (the official MinAtar inner loop; see the README for file and
line) and differ only in the drift: PPO's clip (ε = 0.2) or DPO's closed form (α = 2,
β = 0.6). Seed i of PPO and seed i of DPO start from the same key, so their difference
is paired and the seed-to-seed spread cancels.

The score of a run is its mean training-episode return over the last 10% of its updates
(fixed before any run). Per game, DPO − PPO gets a paired bootstrap 95% interval over
seeds; across games, the same for the mean over games of the return divided by PPO's
1e7-step reference return (`meta_test.REFERENCE_RETURNS`). The verdict rule is
`rlx.stats.verdict` with the claim's direction, "greater".

Writes `dpo-minatar.png` (learning curves per game; the paired differences with their
intervals), `dpo-minatar.csv` (one row per run) and, through `rlx reproduce`,
`dpo-minatar.json` (the differences, intervals and verdicts).
"""

from __future__ import annotations

import os

import rlx

rlx.use_every_cpu_core()  # before jax starts: seeds run on every core

import time  # noqa: E402

import numpy as np  # noqa: E402

from rlx.experiments import main  # noqa: E402

META = dict(
    name="dpo-minatar",
    paper="Lu et al. 2022, Discovered Policy Optimisation (NeurIPS)",
    figure="DPO against PPO on MinAtar (their MinAtar transfer figure), as paired differences at one budget",
    claim="DPO, the closed-form drift distilled from LPO, does at least as well as PPO on MinAtar and "
          "better on some games.",
    expected="paper scale (1e7 steps per run): DPO >= PPO on every game. mid scale (1e6 steps, 16 paired "
             "seeds): a test of DPO - PPO at a tenth of the budget, with its interval and verdict per game.",
    paper_value="DPO >= PPO on MinAtar",
    headline="normalised_dpo_minus_ppo",
    budget={"smoke": "about 1 min on 2 CPU cores", "cpu": "about 5 min on 2 CPU cores",
            "mid": "about 45 min on 2 CPU cores", "paper": "GPU (1.28e9 env steps)"},
)  # fmt: skip

GAMES = ("gymnax/Asterix-MinAtar", "gymnax/Breakout-MinAtar", "gymnax/Freeway-MinAtar", "gymnax/SpaceInvaders-MinAtar")
DIRECTION = "greater"  # the claim: DPO - PPO > 0
MIN_SEEDS = 4
TAIL = 0.1  # a run's score: mean episode return over its last 10% of updates
SCALES = {
    "smoke": dict(steps=16_384, seeds=2, games=GAMES[:2], num_envs=16),
    "cpu": dict(steps=250_000, seeds=4, games=GAMES),
    "mid": dict(steps=1_000_000, seeds=16, games=GAMES),
    # The papers' budget: 1e7 env steps per run (the official configs' TOTAL_TIMESTEPS).
    "paper": dict(steps=10_000_000, seeds=16, games=GAMES),
}


def score(returns: np.ndarray, tail: float = TAIL) -> np.ndarray:
    """Mean episode return over the last `tail` of the updates, ignoring updates in which no
    episode ended. `returns: [seeds, U]` -> `[seeds]`."""
    u = returns.shape[1]
    k = max(1, int(np.ceil(tail * u)))
    with np.errstate(all="ignore"):
        return np.nanmean(returns[:, u - k:], axis=1)


def paired(dpo: np.ndarray, ppo: np.ndarray) -> dict:
    """DPO − PPO over paired seeds: mean, bootstrap 95% interval and verdict. `[seeds]` each."""
    from rlx.stats import difference_test

    return dict(difference_test(dpo, ppo, DIRECTION, min_units=MIN_SEEDS), dpo=float(np.mean(dpo)), ppo=float(np.mean(ppo)))


def run(scale: str = "smoke", out_dir: str | None = None) -> dict:
    from rlx.agents.meta.meta_test import REFERENCE_RETURNS, Drift, run_drift
    from rlx.experiments import write_csv

    s = SCALES[scale]
    out_dir = out_dir or os.path.join("results", META["name"])
    os.makedirs(out_dir, exist_ok=True)
    contenders = (Drift("PPO", "ppo"), Drift("DPO", "dpo"))
    total = len(s["games"]) * len(contenders) * s["seeds"] * s["steps"]
    print(f"dpo-minatar at scale {scale}: {len(s['games'])} games x {len(contenders)} drifts x {s['seeds']} seeds "
          f"x {s['steps']:,} env steps = {total:,} env steps", flush=True)  # fmt: skip
    extra = {"num_envs": s["num_envs"]} if "num_envs" in s else {}
    t0 = time.perf_counter()
    rows, curves, scores = [], {}, {}
    for env_id in s["games"]:
        for d in contenders:
            t = time.perf_counter()
            m = run_drift(env_id, d, s["steps"], s["seeds"], extra)
            ret = m["episode_return"]  # [seeds, U]
            curves[(env_id, d.name)] = (m["env_steps"][0], ret)
            scores[(env_id, d.name)] = score(ret)
            for seed in range(s["seeds"]):
                rows.append(dict(env=env_id, drift=d.name, seed=seed, total_steps=int(m["env_steps"][seed, -1]),
                                 score=float(scores[(env_id, d.name)][seed]), final_return=float(ret[seed, -1])))  # fmt: skip
            print(f"{env_id} {d.name}: score {np.mean(scores[(env_id, d.name)]):.2f} "
                  f"({time.perf_counter() - t:.1f} s)", flush=True)  # fmt: skip
    per_game = {g: paired(scores[(g, "DPO")], scores[(g, "PPO")]) for g in s["games"]}
    norm = {n: np.mean([scores[(g, n)] / REFERENCE_RETURNS[g] for g in s["games"]], axis=0) for n in ("PPO", "DPO")}
    overall = paired(norm["DPO"], norm["PPO"])
    name = META["name"]
    write_csv(os.path.join(out_dir, f"{name}.csv"), rows)
    _plot(os.path.join(out_dir, f"{name}.png"), curves, per_game, overall, s)
    return {
        "steps_per_run": s["steps"],
        "seeds": s["seeds"],
        "score": f"mean training-episode return over the last {TAIL:.0%} of updates",
        "dpo_minus_ppo": {g.split("/")[-1]: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                          for g, r in per_game.items()},  # fmt: skip
        "normalised_dpo_minus_ppo": round(overall["mean"], 4),
        "interval": [round(overall["low"], 4), round(overall["high"], 4)],
        "verdict": overall["verdict"],
        "wall_s": round(time.perf_counter() - t0, 1),
        "env_steps": total,
    }


def _plot(path, curves, per_game, overall, s) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlx.plotting import band, forward_fill, save_figure

    games = list(s["games"])
    fig, axes = plt.subplots(1, len(games) + 1, figsize=(4.2 * (len(games) + 1), 3.8), squeeze=False)
    for ax, g in zip(axes[0], games):
        for n in ("PPO", "DPO"):
            x, y = curves[(g, n)]
            mean, lo, hi, what = band(forward_fill(y))
            (line,) = ax.plot(x, mean, label=f"{n} ({what})")
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        r = per_game[g]
        ax.set_title(f"{g.split('/')[-1]}\nDPO − PPO {r['mean']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}]", fontsize=9)
        ax.set_xlabel("env steps")
        ax.set_ylabel("episode return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[0, -1]
    labels = [g.split("/")[-1].replace("-MinAtar", "") for g in games] + ["normalised\nmean"]
    # Each game's difference in units of its PPO reference return, so they share one axis.
    from rlx.agents.meta.meta_test import REFERENCE_RETURNS

    rs = [{k: per_game[g][k] / REFERENCE_RETURNS[g] for k in ("mean", "low", "high")} for g in games] + [overall]
    for i, r in enumerate(rs):
        ax.errorbar([i], [r["mean"]], yerr=[[r["mean"] - r["low"]], [r["high"] - r["mean"]]], fmt="o", capsize=4,
                    color="black" if i == len(rs) - 1 else "tab:blue")  # fmt: skip
    ax.axhline(0.0, color="grey", lw=1)
    ax.set_xticks(range(len(rs)), labels, fontsize=8)
    ax.set_ylabel("DPO − PPO / PPO's 1e7-step reference return")
    ax.set_title(f"paired 95% intervals, {s['seeds']} seeds, {s['steps']:.0e} steps", fontsize=9)
    ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    main(run, SCALES, __doc__)
