"""A PyTorch peer for the MORL benchmark: MORL-Baselines' PGMORL on MO-HalfCheetah.

PGMORL's warm-up phase is a linear-scalarisation PPO population, the same job as
C-MORL's stage 1: here 6 policies, each with 4 MuJoCo envs x 2048 steps per
iteration, 10 epochs of 32 minibatches, (64, 64) networks, trained one after the
other in one PyTorch process, or shared among `--processes` processes running side by
side (the official C-MORL code runs one process per policy; on one core that is the
same work). We time `train` iterations of all 6 policies, excluding PGMORL's
evaluations, and report env-steps/s.

It needs torch, morl-baselines and mo-gymnasium[mujoco], which rlx does not depend
on, so it runs in its own environment:

    python3.11 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install morl-baselines==1.3.0 "mo-gymnasium[mujoco]"
    taskset -c 0 /tmp/torchenv/bin/python benchmarks/bench_morl_torch.py --iterations 2
    /tmp/torchenv/bin/python benchmarks/bench_morl_torch.py --processes 2   # every core of a 2-core machine

Compare with rlx's stage 1 on the same cores:
`taskset -c 0 .venv/bin/python benchmarks/bench_morl.py --env mo-halfcheetah` (one core), or
without `taskset` (one XLA device per core, the population sharded over them).
The physics differ (MuJoCo here, brax's spring backend in rlx), so the ratio is an
estimate of the framework's cost, not of identical work.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def train_policies(pop_size: int, iterations: int, threads: int, seed: int) -> tuple[int, float]:
    """PGMORL's warm-up for `pop_size` policies in this process: `(env steps, seconds)`
    over `iterations` timed iterations, after one untimed warm-up iteration."""
    import torch
    from morl_baselines.multi_policy.pgmorl.pgmorl import PGMORL

    torch.set_num_threads(threads)
    algo = PGMORL(env_id="mo-halfcheetah-v5", origin=np.array([0.0, -1000.0]), num_envs=4, pop_size=pop_size,
                  steps_per_iteration=2048, net_arch=[64, 64], num_minibatches=32, update_epochs=10,
                  log=False, seed=seed, device="cpu")  # fmt: skip
    algo.start_time = time.time()  # `train` sets it before its first iteration; the agents log from it
    train_all = algo._PGMORL__train_all_agents  # the per-iteration step of `train`, without its evaluations
    train_all(iteration=0, max_iterations=iterations + 1)  # first iteration: allocation and warm caches
    start_steps = algo.global_step
    t = time.perf_counter()
    for i in range(1, iterations + 1):
        train_all(iteration=i, max_iterations=iterations + 1)
    return algo.global_step - start_steps, time.perf_counter() - t


def _worker(args):
    return train_policies(*args)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=2, help="PGMORL iterations timed (each: 6 x 8192 env steps)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--processes", type=int, default=1, choices=(1, 2, 3, 6),
                   help="processes sharing the 6 policies, run at the same time (6: one process per policy)")
    args = p.parse_args()

    import torch

    pop = 6 // args.processes
    if args.processes == 1:
        results = [train_policies(pop, args.iterations, args.threads, 0)]
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(args.processes) as pool:
            results = pool.map(_worker, [(pop, args.iterations, args.threads, i) for i in range(args.processes)])
    steps = sum(r[0] for r in results)
    seconds = max(r[1] for r in results)  # the processes run side by side: the job ends with the slowest
    print(f"\nPGMORL (morl-baselines, torch {torch.__version__}, {args.processes} process(es) x {args.threads} "
          f"thread(s)), mo-halfcheetah-v5, 6 policies x 4 envs x 2048 steps, 10 epochs x 32 minibatches")  # fmt: skip
    print(f"{steps} env steps in {seconds:.1f} s: {steps / seconds:,.0f} env-steps/s")


if __name__ == "__main__":
    main()
