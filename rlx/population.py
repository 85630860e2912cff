"""Populations: seeds x traced hyperparameters in one program, sharded over devices.

A population of P members is a batch of typed PRNG keys `[P]` and a config whose
traced leaves have a leading axis `[P]`. It runs as `jit(vmap(train))`, with the P
axis placed on a 1-D device mesh `("pop",)` through `NamedSharding`, so the same
code uses one device, every local device, or (after `jax.distributed.initialize`)
every device of every host.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rlx.config import apply_overrides, is_static, stack

import dataclasses


class Population(NamedTuple):
    keys: jax.Array  # [P] typed keys
    cfg: Any  # config with traced leaves [P]
    members: list[dict]  # per member: {"member", "seed", **swept hyperparameters}


def make_population(
    cfg: Any, seeds: int | Sequence[int] = 1, grid: dict[str, Sequence[Any]] | None = None
) -> Population:
    """Every combination of `grid` values (traced fields only) for every seed.

    `seeds` is a count (seeds 0..n-1) or an explicit list. Member order is
    grid-major, seed-minor.
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("seeds: need at least one seed")
    grid = dict(grid or {})
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    for name, values in grid.items():
        if name not in fields:
            apply_overrides(cfg, {name: None})  # raises with close matches
        if is_static(fields[name]):
            raise ValueError(
                f"sweep: {type(cfg).__name__}.{name} is a static field (it shapes the compiled "
                "program), so it cannot vary inside one population; run one sweep per value."
            )
        if len(values) == 0:
            raise ValueError(f"sweep: grid for {name!r} is empty")
    combos = [dict(zip(grid, vals)) for vals in itertools.product(*grid.values())] or [{}]
    configs, keys, members = [], [], []
    for combo in combos:
        c = apply_overrides(cfg, combo)
        for seed in seed_list:
            configs.append(c)
            keys.append(jax.random.key(seed))
            members.append({"member": len(members), "seed": seed, **combo})
    return Population(jax.numpy.stack(keys), stack(configs), members)


def check_devices(population_size: int, num_devices: int) -> None:
    """Raise unless the population splits evenly over the devices."""
    available = len(jax.devices())
    if jax.process_count() > 1 and (num_devices != available or population_size % available):
        # Every process must hold members: the mesh spans all global devices.
        raise ValueError(
            f"population size {population_size} on devices = {num_devices} is invalid in a run over "
            f"{jax.process_count()} processes: the population is spread over all {available} global devices "
            f"({jax.local_device_count()} per process), so it must be a multiple of {available}."
        )
    if num_devices < 1 or num_devices > available:
        raise ValueError(f"devices = {num_devices} is invalid: it must be between 1 and {available} (jax.devices()).")
    if population_size % num_devices:
        ok = [d for d in range(1, available + 1) if population_size % d == 0]
        raise ValueError(
            f"population size {population_size} is not divisible by devices = {num_devices}: "
            f"accepted device counts for this population are {ok}, or make the population a multiple of {num_devices}."
        )


def default_devices(population_size: int) -> int:
    """The most devices that divide the population evenly (every global device when
    the run spans processes)."""
    if jax.process_count() > 1:
        return len(jax.devices())
    return math.gcd(population_size, len(jax.devices()))


def make_mesh(num_devices: int) -> Mesh:
    return Mesh(np.asarray(jax.devices()[:num_devices]), ("pop",))


def pop_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over the mesh; every other axis replicated."""
    return NamedSharding(mesh, PartitionSpec("pop"))


def shard(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf (leading axis P) on the mesh. On a mesh over several processes
    each process places only its own members (`rlx.distributed.put_global`)."""
    from rlx.distributed import put_global

    return put_global(tree, pop_sharding(mesh))
