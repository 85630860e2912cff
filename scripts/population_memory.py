"""Device memory of one population chunk, per device, from the compiled program
(nothing is run). Use it to choose --population-mode, --map-batch-size and --devices
before a long run.

    python scripts/population_memory.py ppo --env gymnax/CartPole-v1 --seeds 8 \\
        --set num_envs=64 num_steps=128 --modes vmap map map:2 map:4

Prints, for each mode, the bytes XLA reports for the arguments (the population's
state and config: persistent), the outputs and the temporaries (rollout buffers,
activations: alive only while the chunk runs). The state is not allocated: it is
traced with `jax.eval_shape`.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("algo")
    p.add_argument("--env", required=True)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--devices", type=int, default=1, help="devices the population is spread over")
    p.add_argument("--chunk-updates", type=int, default=1)
    p.add_argument("--modes", nargs="+", default=["vmap", "map", "map:4"], help="vmap, map, or map:B (map batch size B)")
    args = p.parse_args(argv)

    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={max(args.devices, 1)}".strip()
    import jax
    import numpy as np

    from rlx import envs
    from rlx.cli import ALGORITHMS, _algorithm
    from rlx.config import apply_overrides
    from rlx.population import make_population, shard
    from rlx.train import Runner

    if args.algo not in ALGORITHMS:
        _algorithm(args.algo)  # the error with close matches
    module, config_cls, _ = _algorithm(args.algo)
    cfg = apply_overrides(config_cls(), args.set)
    env, env_params = envs.make(args.env)
    agent = module.make_agent(env, cfg)
    pop = make_population(cfg, seeds=args.seeds)
    print(f"{args.algo} on {args.env}: {args.seeds} members on {args.devices} {jax.default_backend()} device(s); "
          f"per device, one chunk of {args.chunk_updates} update(s):")  # fmt: skip
    print(f"{'mode':>10} {'arguments':>12} {'outputs':>12} {'temporaries':>12}")
    for mode in args.modes:
        name, _, batch = mode.partition(":")
        runner = Runner(agent, pop, env_params, None, devices=args.devices, progress=False, population_mode=name,
                        chunk_updates=args.chunk_updates, map_batch_size=int(batch) if batch else None)  # fmt: skip
        keys, c = shard(pop.keys, runner.mesh), shard(pop.cfg, runner.mesh)
        state = jax.eval_shape(runner._init_fn(), keys, c, env_params)
        m = runner._chunk_fn().lower(state, c, (env_params, np.int32(args.chunk_updates))).compile().memory_analysis()
        print(f"{mode:>10} {_mib(m.argument_size_in_bytes):>12} {_mib(m.output_size_in_bytes):>12} "
              f"{_mib(m.temp_size_in_bytes):>12}", flush=True)  # fmt: skip
    return 0


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


if __name__ == "__main__":
    sys.exit(main())
