"""`rlx train cmorl`: C-MORL (Liu et al., ICLR 2025) on a vector-reward env.

    rlx train cmorl --env rlx/deep-sea-treasure --rounds 2 --out runs/cmorl

Stage 1 trains one MO-PPO policy per preference of a simplex lattice, stage 2 extends
the Pareto front by constrained optimisation for `--rounds` rounds. The run is C-MORL
on the host loop: `metrics.csv` (one row per stage, with hypervolume, expected utility,
sparsity and cardinality), checkpoints (stage 1's in `stage1/`), `--resume DIR`; at the
end `front.csv` (the archive's returns), `front.png` and `archive/` (every archived
policy, `cmorl.load_archive`).
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence


def parser() -> argparse.ArgumentParser:
    """The flags of `rlx train cmorl`."""
    from rlx.cli import add_run_flags

    p = argparse.ArgumentParser(prog="rlx train cmorl", description=__doc__.splitlines()[0])
    p.add_argument("--env", default="rlx/deep-sea-treasure", help="a vector-reward env with an mo_spec")
    p.add_argument("--rounds", type=int, default=None, help="stage-2 rounds (default: CMORLConfig's)")
    p.add_argument("--cmorl-set", nargs="*", default=[], help="CMORLConfig overrides, key=value")
    p.add_argument("--devices", type=int, default=None)
    add_run_flags(p, "runs/cmorl")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """`rlx train cmorl ARGV`: run C-MORL on a vector-reward env; returns the exit code."""
    args = parser().parse_args(argv)
    import numpy as np

    from rlx import envs
    from rlx.agents.morl import cmorl, moppo
    from rlx.config import apply_overrides
    from rlx.tracking import Trackers

    trackers = Trackers(args.log)  # checked now, built once the run is checked
    out = args.resume or args.out or "runs/cmorl"
    env, env_params = envs.make(args.env)
    d = getattr(env, "reward_dim", None)
    if not d:
        raise ValueError(f"--env {args.env}: C-MORL needs a vector-reward env; this one has scalar rewards.")
    cfg = apply_overrides(moppo.MOPPOConfig(weights=np.full(d, 1.0 / d, np.float32), normalize_obs=True), args.set)
    ccfg = apply_overrides(cmorl.CMORLConfig(), args.cmorl_set)
    if args.rounds is not None:
        ccfg = ccfg.replace(rounds=args.rounds)
    with trackers:
        result = cmorl.run(env, env_params, cfg, ccfg, seed=args.seed, devices=args.devices, out_dir=out,
                           resume=bool(args.resume), progress=not args.no_progress,
                           trackers=trackers if trackers.names else None)  # fmt: skip
    write_front(out, result, env.name)
    last = result.history[-1]
    print(f"{out}: {len(result.ids)} policies on the front after {len(result.history) - 1} rounds; "
          f"hypervolume {last['hypervolume']:.4g}, {result.env_steps:,} env steps; front.csv, front.png")  # fmt: skip
    return 0


def write_front(out: str, result, env_name: str) -> None:
    """front.csv (id, discounted and undiscounted returns), front.png, archive/."""
    import shutil

    from rlx.agents.morl import cmorl
    from rlx.runfiles import atomic_open

    d = result.points.shape[1]
    with atomic_open(os.path.join(out, "front.csv"), "w") as f:
        f.write(",".join(["id"] + [f"return_{j}" for j in range(d)] + [f"undiscounted_{j}" for j in range(d)]) + "\n")
        for i, p, u in zip(result.ids, result.points, result.undiscounted):
            f.write(",".join([str(int(i))] + [repr(float(x)) for x in p] + [repr(float(x)) for x in u]) + "\n")
    archive = os.path.join(out, "archive")
    shutil.rmtree(archive, ignore_errors=True)  # written again from the final state
    if len(result.ids):
        cmorl.save_archive(archive, result)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(result.all_points[:, 0], result.all_points[:, 1], s=8, c="0.75", label="evaluated")
    ax.scatter(result.points[:, 0], result.points[:, 1], s=18, c="C3", label="front")
    ax.set_xlabel("objective 0 (discounted return)")
    ax.set_ylabel("objective 1 (discounted return)")
    ax.set_title(f"C-MORL on {env_name}" + (" (first two objectives)" if d > 2 else ""))
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "front.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
