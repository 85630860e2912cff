"""Meta-testing: train PPO with any drift (PPO, DPO, a saved LPO or TA-LPO), or an agent
trained by a learned policy gradient (a saved LPG or TA-LPG, or A2C as the baseline), on
held-out envs, at several training horizons, with several seeds; write a table and curves.

    rlx train meta-test --drift ppo --drift dpo \\
        --drift lpo=lpo:runs/lpo/mean.npz --env gymnax/Acrobot-v1 \\
        --horizons 0.5,1,2 --seeds 8 --out results/meta-test

    rlx train meta-test --drift a2c --drift lpg --drift ta=ta_lpg:results/lpg-lifetimes/ta_lpg.npz \\
        --env gymnax/CartPole-v1 --base-steps 100000 --seeds 4

Every `--drift` is an update rule. ppo, dpo and the KINDs lpo, lpo_ppo_init, ta_lpo,
ta_lpo_ppo_init train PPO with that drift (`--set` overrides PPO fields). a2c, lpg and
ta_lpg train `rlx.agents.meta.lpg_gym`'s agent (discrete actions only; `--lpg-set`
overrides its fields): bare `lpg` / `ta_lpg` is the untrained meta-network (its π̂ head
is zero, so the policy stays uniform), `NAME=lpg:PATH.npz` a saved one, whose GRU, y and
φ sizes are read from the file.

A horizon is a multiple of the env's base step budget (`--base-steps`, or the preset's
`total_steps`). TA-LPO sees its progress n/N against the horizon it is run at, which
is what the TA paper's horizon experiment varies.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from typing import Any, NamedTuple, Sequence

if __name__ == "__main__":
    # As a command: one XLA device per core, so seeds run in parallel (set before jax starts).
    import rlx

    rlx.use_every_cpu_core()

import jax
import numpy as np

from rlx.agents import ppo
from rlx.agents.meta import drifts, lpg, lpg_gym

# PPO settings per held-out env. MinAtar follows Jackson et al. 2024 (their inner
# loop: 64 envs x 128 steps, 4 epochs x 8 minibatches, relu MLP of width 64, 1e7 steps,
# per-game annealed learning rates). CartPole and Acrobot use PureJaxRL's classic-control
# settings (PPOConfig's defaults). brax envs use the brax.training-like preset.
_MINATAR = dict(num_envs=64, num_steps=128, total_steps=10_000_000, update_epochs=4, num_minibatches=8,
                activation="relu", hidden=(64, 64), critic_hidden=(64, 64), clip_eps=0.2, ent_coef=0.01)  # fmt: skip
PRESETS: dict[str, dict] = {
    "gymnax/CartPole-v1": dict(),
    "gymnax/Acrobot-v1": dict(),
    "gymnax/Asterix-MinAtar": dict(_MINATAR, lr=3e-3),
    "gymnax/Freeway-MinAtar": dict(_MINATAR, lr=1e-3),
    "gymnax/Breakout-MinAtar": dict(_MINATAR, lr=1e-2),
    "gymnax/SpaceInvaders-MinAtar": dict(_MINATAR, lr=7e-3),
}
# PPO's final return at 1e7 steps with a dense MLP (brax/ant: at 3e7; CartPole: solved), for normalised fitness.
REFERENCE_RETURNS = {
    "gymnax/Asterix-MinAtar": 15.04, "gymnax/Freeway-MinAtar": 61.84, "gymnax/Breakout-MinAtar": 50.08,
    "gymnax/SpaceInvaders-MinAtar": 167.09, "gymnax/CartPole-v1": 475.0, "brax/ant": 6517.0,
}  # fmt: skip


# The LPG agent per held-out env (the LPG papers' meta-test agents): MLP(64, 64) for classic
# control (LPGGymConfig's defaults); MLP(256, 256), Adam 5e-4, 64 workers x 20 steps for MinAtar.
_LPG_MINATAR = dict(hidden=(256, 256), num_envs=64, num_steps=20, lr=5e-4)
LPG_PRESETS: dict[str, dict] = {
    "gymnax/Asterix-MinAtar": _LPG_MINATAR, "gymnax/Freeway-MinAtar": _LPG_MINATAR,
    "gymnax/Breakout-MinAtar": _LPG_MINATAR, "gymnax/SpaceInvaders-MinAtar": _LPG_MINATAR,
}  # fmt: skip
LPG_KINDS = ("a2c", "lpg", "ta_lpg")  # rules that train lpg_gym's agent, not PPO


def lpg_preset(env_id: str, drift: "Drift", **overrides: Any) -> lpg_gym.LPGGymConfig:
    """The LPG agent's config on `env_id` for the rule `drift` (a2c, lpg or ta_lpg)."""
    rule = dict(update_rule="a2c")
    if drift.kind != "a2c":
        rule = dict(update_rule="lpg", lpg_params=drift.params, **lpg_gym.meta_fields(drift.params))
    return lpg_gym.LPGGymConfig(**{**LPG_PRESETS.get(env_id, {}), **overrides, **rule})


def preset(env_id: str, **overrides: Any) -> ppo.PPOConfig:
    """The PPO config meta-testing uses on `env_id`, with `overrides` applied."""
    if env_id.startswith("brax/"):
        return ppo.brax_config(**overrides)
    return ppo.PPOConfig(**{**PRESETS.get(env_id, {}), **overrides})


class Drift(NamedTuple):
    """A drift to meta-test: a name for tables, its kind and its parameters."""

    name: str
    kind: str
    params: Any = None


def parse_drift(spec: str) -> Drift:
    """`ppo`, `dpo`, `a2c`, `lpg`, `ta_lpg` (the untrained meta-networks), or `NAME=KIND:PATH.npz`
    (a saved learned drift or LPG, e.g. `lpo=lpo:runs/lpo/mean.npz`, `lpg=lpg:results/lpg-lifetimes/lpg.npz`)."""
    from rlx.agents.meta.es import load_params

    kinds = (*drifts.KINDS, *LPG_KINDS)
    if "=" not in spec:
        kind = spec.strip()
        if kind == "a2c":
            return Drift("a2c", "a2c")
        if kind in LPG_KINDS:
            return Drift(f"untrained_{kind}", kind, lpg.init_params(temporal=kind == "ta_lpg"))
        if kind not in drifts.KINDS:
            raise ValueError(f"--drift {spec!r} is invalid: accepted values are {', '.join(kinds)}, or NAME=KIND:PATH.npz.")
        drifts.check_params(kind, drifts.init_params(kind), f"--drift {spec}")
        return Drift(kind, kind, drifts.init_params(kind))
    name, rest = spec.split("=", 1)
    if ":" not in rest or not name.strip():
        raise ValueError(f"--drift {spec!r}: expected NAME=KIND:PATH.npz (KIND one of {', '.join(kinds)}).")
    kind, path = rest.split(":", 1)
    if kind not in kinds or kind == "a2c":
        raise ValueError(f"--drift {spec!r}: KIND {kind!r} is invalid: a saved file is one of "
                         f"{', '.join(k for k in kinds if k != 'a2c')}.")  # fmt: skip
    if not os.path.isfile(path):
        raise ValueError(f"--drift {spec!r}: no file {path!r}.")
    params = load_params(path)
    if kind in LPG_KINDS:
        check_lpg(kind, params, f"--drift {spec}")
    else:
        drifts.check_params(kind, params, f"--drift {spec}")
    return Drift(name.strip(), kind, params)


def check_lpg(kind: str, params: Any, where: str) -> None:
    """Raise unless `params` is a meta-network of `kind` (lpg: 5 inputs; ta_lpg: 7)."""
    try:
        fields = lpg_gym.meta_fields(params)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if fields["temporal"] != (kind == "ta_lpg"):
        other = "ta_lpg" if fields["temporal"] else "lpg"
        raise ValueError(f"{where}: the file holds a{' TA-' if fields['temporal'] else 'n '}LPG network "
                         f"(gru_wi reads {lpg.input_size(fields['temporal'])} inputs), not {kind}: use KIND {other}.")  # fmt: skip
    lpg.check_params(params, lpg_gym.LPGGymConfig(update_rule="a2c", **fields), where)


def run_drift(
    env_id: str,
    drift: Drift,
    total_steps: int,
    seeds: int,
    overrides: dict | None = None,
    devices: int | None = None,
    lpg_overrides: dict | None = None,
) -> dict[str, np.ndarray]:
    """Train PPO with `drift` (or, for a2c / lpg / ta_lpg, lpg_gym's agent with that rule)
    for `total_steps` on `seeds` seeds (one program, members spread over the devices).
    Returns `{metric: [seeds, U]}`."""
    from rlx import envs
    from rlx import population as pop_lib
    from rlx.train import make_train, over_population, resolve_population_mode

    env, env_params = envs.make(env_id)
    if drift.kind in LPG_KINDS:
        cfg = lpg_preset(env_id, drift, **(lpg_overrides or {}), total_steps=int(total_steps))
        agent = lpg_gym.make_agent(env, cfg)
    else:
        cfg = preset(env_id, **(overrides or {}), total_steps=int(total_steps), drift=drift.kind, drift_params=drift.params)
        agent = drifts.make_agent(env, cfg)
    pop = pop_lib.make_population(cfg, seeds=seeds)
    n = pop_lib.default_devices(seeds) if devices is None else devices
    mesh = pop_lib.make_mesh(n)
    train = make_train(agent, cfg)
    fn = jax.jit(over_population(train, mesh, resolve_population_mode("auto")))
    _, metrics = fn(pop_lib.shard(pop.keys, mesh), pop_lib.shard(pop.cfg, mesh), env_params)
    return {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}


def meta_test(
    drift_list: Sequence[Drift],
    env_ids: Sequence[str],
    horizons: Sequence[float] = (1.0,),
    seeds: int = 4,
    base_steps: dict[str, int] | int | None = None,
    overrides: dict | None = None,
    per_env: dict[str, dict] | None = None,
    out_dir: str | None = None,
    progress: bool = True,
    lpg_overrides: dict | None = None,
) -> tuple[list[dict], dict]:
    """Every drift x env x horizon, `seeds` runs each.

    Returns `(rows, curves)`: one row per run (`env, drift, horizon, total_steps, seed,
    final_return, mean_return`) and `curves[(env, drift, horizon)] = (env_steps [U],
    episode_return [seeds, U])`. With `out_dir`, writes `meta_test.csv` and `meta_test.png`.
    `overrides` are PPO fields for every env; `per_env[env_id]` adds fields for one env;
    `lpg_overrides` are LPGGymConfig fields for the a2c / lpg / ta_lpg rules.
    """
    rows, curves = [], {}
    for env_id in env_ids:
        base = base_steps.get(env_id) if isinstance(base_steps, dict) else base_steps
        extra = {**(overrides or {}), **((per_env or {}).get(env_id, {}))}
        base = int(base or preset(env_id, **extra).total_steps)
        for h in horizons:
            for d in drift_list:
                t = time.perf_counter()
                m = run_drift(env_id, d, max(1, int(round(h * base))), seeds, extra, lpg_overrides=lpg_overrides)
                ret = m["episode_return"]
                curves[(env_id, d.name, h)] = (m["env_steps"][0], ret)
                for s in range(seeds):
                    with np.errstate(all="ignore"):
                        rows.append(dict(
                            env=env_id, drift=d.name, horizon=h, total_steps=int(m["env_steps"][s, -1]), seed=s,
                            final_return=float(ret[s, -1]), mean_return=float(np.nanmean(ret[s])),
                        ))  # fmt: skip
                if progress:
                    fin = np.nanmean(ret[:, -1])
                    print(f"{env_id} {d.name} x{h:g}: final return {fin:.2f} ({time.perf_counter() - t:.1f} s)", flush=True)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        write_rows(os.path.join(out_dir, "meta_test.csv"), rows)
        plot(os.path.join(out_dir, "meta_test.png"), rows, curves)
    return rows, curves


def write_rows(path: str, rows: list[dict]) -> None:
    """Write `rows` (dicts with the same keys) to `path` as CSV, a header first."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def summary(rows: list[dict]) -> dict[tuple, tuple[float, float]]:
    """`{(env, drift, horizon): (mean final return, 95% CI half-width)}` over seeds."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r["env"], r["drift"], r["horizon"]), []).append(r["final_return"])
    out = {}
    for k, v in groups.items():
        v = np.asarray(v, float)
        v = v[np.isfinite(v)]
        half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.nan
        out[k] = (float(v.mean()) if len(v) else np.nan, float(half))
    return out


def plot(path: str, rows: list[dict], curves: dict) -> None:
    """Per env: final return against horizon (one line per drift, 95% CI), and the
    learning curves at the middle horizon."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlx.plotting import band, forward_fill, save_figure

    table = summary(rows)
    env_ids = list(dict.fromkeys(r["env"] for r in rows))
    names = list(dict.fromkeys(r["drift"] for r in rows))
    horizons = sorted({r["horizon"] for r in rows})
    fig, axes = plt.subplots(len(env_ids), 2, figsize=(11, 3.8 * len(env_ids)), squeeze=False)
    for i, env_id in enumerate(env_ids):
        ax = axes[i, 0]
        for name in names:
            mean = [table[(env_id, name, h)][0] for h in horizons]
            half = [table[(env_id, name, h)][1] for h in horizons]
            ax.errorbar(horizons, mean, yerr=half, marker="o", capsize=3, label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(horizons, [f"{h:g}" for h in horizons])
        ax.set_xlabel("training horizon (x base)")
        ax.set_ylabel("final return")
        ax.set_title(env_id)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax = axes[i, 1]
        mid = horizons[len(horizons) // 2]
        for name in names:
            x, y = curves[(env_id, name, mid)]
            mean, lo, hi, what = band(forward_fill(y))
            (line,) = ax.plot(x, mean, label=f"{name} ({what})")
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xlabel("env steps")
        ax.set_ylabel("episode return")
        ax.set_title(f"{env_id}, horizon x{mid:g}")
        ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=120)


def main(argv: Sequence[str] | None = None) -> None:
    """`rlx train meta-test ARGV`: parse the flags (see the module docstring) and run."""
    parser = argparse.ArgumentParser(prog="rlx train meta-test", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drift", action="append", required=True,
                        help="ppo | dpo | a2c | lpg | ta_lpg | NAME=KIND:PATH.npz (repeat)")  # fmt: skip
    parser.add_argument("--env", action="append", required=True, help="held-out env id (repeat)")
    parser.add_argument("--horizons", default="1", help="comma-separated multiples of the base steps")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--base-steps", type=float, default=None, help="base env steps (default: the preset's)")
    parser.add_argument("--set", nargs="*", default=[], help="PPO field overrides, key=value")
    parser.add_argument("--lpg-set", nargs="*", default=[], help="LPG/A2C agent (LPGGymConfig) field overrides, key=value")
    parser.add_argument("--devices", type=int, default=None, help="CPU devices (default: every core)")
    parser.add_argument("--out", default="results/meta-test")
    args = parser.parse_args(argv)
    from rlx.config import apply_overrides

    drift_list = [parse_drift(s) for s in args.drift]
    names = [item.split("=", 1)[0].strip().replace("-", "_") for item in args.set]
    parsed = apply_overrides(ppo.PPOConfig(), args.set)  # typed, validated, close-match errors
    overrides = {k: getattr(parsed, k) for k in names}
    lpg_names = [item.split("=", 1)[0].strip().replace("-", "_") for item in args.lpg_set]
    lpg_parsed = apply_overrides(lpg_gym.LPGGymConfig(update_rule="a2c"), args.lpg_set)
    lpg_overrides = {k: getattr(lpg_parsed, k) for k in lpg_names}
    horizons = [float(h) for h in args.horizons.split(",")]
    base = int(args.base_steps) if args.base_steps else None
    rows, _ = meta_test(drift_list, args.env, horizons, args.seeds, base, overrides, out_dir=args.out,
                        lpg_overrides=lpg_overrides)  # fmt: skip
    for (env_id, name, h), (mean, half) in summary(rows).items():
        print(f"{env_id:32s} {name:12s} x{h:<5g} final return {mean:9.2f} ± {half:.2f}")


if __name__ == "__main__":
    main()
