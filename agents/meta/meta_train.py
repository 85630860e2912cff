"""`rlx train lpo-es`: meta-train a learned PPO drift (LPO or TA-LPO) with OpenES.

    rlx train lpo-es --env gymnax/CartPole-v1 --generations 4 --population 8 --steps 20000 --out runs/lpo

Each candidate drift trains PPO from scratch on every `--env` for `--steps` env steps;
its fitness is the final return, averaged over the envs. The run is the ES meta-trainer
on the host loop: `metrics.csv` (one row per generation), `mean.npz` and `best.npz`
(the drift parameters, for `rlx train meta-test --drift NAME=lpo:PATH`), checkpoints,
and `--resume DIR` continues it exactly.
"""

from __future__ import annotations

import argparse
from typing import Sequence


def parser() -> argparse.ArgumentParser:
    """The flags of `rlx train lpo-es`."""
    from rlx.cli import add_run_flags

    p = argparse.ArgumentParser(prog="rlx train lpo-es", description=__doc__.splitlines()[0])
    p.add_argument("--env", action="append", help="meta-training env id (repeat; default gymnax/CartPole-v1)")
    p.add_argument("--drift", default="lpo", choices=("lpo", "ta_lpo"), help="the learned drift's kind")
    p.add_argument("--hidden", type=int, default=16, help="hidden units of the drift network")
    p.add_argument("--generations", type=int, default=10)
    p.add_argument("--population", type=int, default=8, help="candidates per generation (even)")
    p.add_argument("--steps", type=int, default=20_000, help="env steps of every inner PPO run")
    p.add_argument("--sigma", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--eval-seeds", type=int, default=2, help="seeds scoring the ES mean (0: never)")
    add_run_flags(p, "runs/lpo-es")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """`rlx train lpo-es ARGV`: ES meta-training of a learned drift; returns the exit code."""
    args = parser().parse_args(argv)
    import jax

    from rlx import envs
    from rlx.agents import ppo
    from rlx.agents.meta import drifts
    from rlx.agents.meta.es import ESConfig, MetaTask, MetaTrainer
    from rlx.config import apply_overrides
    from rlx.tracking import Trackers
    from rlx.train import make_train

    trackers = Trackers(args.log)  # checked now, built once the run is checked
    out = args.resume or args.out or "runs/lpo-es"
    init = drifts.init_params(args.drift, jax.random.key(args.seed), hidden=args.hidden, zero_head=True)
    base = apply_overrides(ppo.PPOConfig(), args.set).replace(total_steps=args.steps, drift=args.drift, drift_params=init)
    tasks = []
    for name in args.env or ["gymnax/CartPole-v1"]:
        env, env_params = envs.make(name)
        tasks.append(MetaTask(name, make_train(drifts.make_agent(env, base), base), base, env_params))
    es = ESConfig(population_size=args.population, generations=args.generations, sigma=args.sigma, lr=args.lr,
                  eval_seeds=max(args.eval_seeds, 1), eval_every=1 if args.eval_seeds else 0, seed=args.seed)  # fmt: skip
    with trackers:
        result = MetaTrainer(tasks, "drift_params", init, es, out_dir=out, progress=not args.no_progress).run(
            resume=bool(args.resume), trackers=trackers if trackers.names else None
        )
    h = result.history
    print(f"{out}: {len(h['generation'])} generations; population fitness {h['fitness_mean'][0]:.4g} -> "
          f"{h['fitness_mean'][-1]:.4g}; the ES mean is in {out}/mean.npz")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
