"""A PyTorch peer for the MORL benchmark: MORL-Baselines' PGMORL on MO-HalfCheetah.

PGMORL's warm-up phase is a linear-scalarisation PPO population, the same job as
C-MORL's stage 1: here 6 policies, each with 4 MuJoCo envs x 2048 steps per
iteration, 10 epochs of 32 minibatches, (64, 64) networks, trained one after the
other in one PyTorch process (the official C-MORL code runs one process per policy;
on one core that is the same work). We time `train` iterations of all 6 policies,
excluding PGMORL's evaluations, and report env-steps/s.

It needs torch, morl-baselines and mo-gymnasium[mujoco], which rlx does not depend
on, so it runs in its own environment:

    python3.11 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install morl-baselines==1.3.0 "mo-gymnasium[mujoco]"
    taskset -c 0 /tmp/torchenv/bin/python benchmarks/bench_morl_torch.py --iterations 2

Compare with rlx's stage 1 on the same core:
`taskset -c 0 .venv/bin/python benchmarks/bench_morl.py --env mo-halfcheetah`.
The physics differ (MuJoCo here, brax's spring backend in rlx), so the ratio is an
estimate of the framework's cost, not of identical work.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=2, help="PGMORL iterations timed (each: 6 x 8192 env steps)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args()

    import torch
    from morl_baselines.multi_policy.pgmorl.pgmorl import PGMORL

    torch.set_num_threads(args.threads)
    algo = PGMORL(env_id="mo-halfcheetah-v5", origin=np.array([0.0, -1000.0]), num_envs=4, pop_size=6,
                  steps_per_iteration=2048, net_arch=[64, 64], num_minibatches=32, update_epochs=10,
                  log=False, seed=0, device="cpu")  # fmt: skip
    algo.start_time = time.time()  # `train` sets it before its first iteration; the agents log from it
    train_all = algo._PGMORL__train_all_agents  # the per-iteration step of `train`, without its evaluations
    train_all(iteration=0, max_iterations=args.iterations + 1)  # first iteration: allocation and warm caches
    start_steps = algo.global_step
    t = time.perf_counter()
    for i in range(1, args.iterations + 1):
        train_all(iteration=i, max_iterations=args.iterations + 1)
    seconds = time.perf_counter() - t
    steps = algo.global_step - start_steps
    print(f"\nPGMORL (morl-baselines, torch {torch.__version__}, {args.threads} thread), mo-halfcheetah-v5, "
          f"6 policies x 4 envs x 2048 steps, 10 epochs x 32 minibatches")  # fmt: skip
    print(f"{steps} env steps in {seconds:.1f} s: {steps / seconds:,.0f} env-steps/s")


if __name__ == "__main__":
    main()
