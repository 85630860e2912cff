"""Populations: seeds x traced hyperparameters in one program, sharded over devices.

A population of P members is a batch of typed PRNG keys `[P]` and a config whose
traced leaves have a leading axis `[P]`. It runs as `jit(vmap(train))`, with the P
axis placed on a 1-D device mesh `("pop",)` through `NamedSharding`, so the same
code uses one device, every local device, or (after `jax.distributed.initialize`)
every device of every host.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, NamedTuple, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rlx.config import ConfigError, _no_field, apply_overrides, is_static, stack


class Population(NamedTuple):
    """A population of P members: keys `[P]`, the config with traced leaves `[P]`, and one
    dict per member (its index, seed and swept values)."""

    keys: jax.Array  # [P] typed keys
    cfg: Any  # config with traced leaves [P]
    members: list[dict]  # per member: {"member", "seed", **swept hyperparameters}


def _seed_list(seeds: Any) -> list[int]:
    bad = isinstance(seeds, (bool, np.bool_, str)) or not isinstance(seeds, (int, np.integer, Sequence, np.ndarray))
    if bad:
        raise ConfigError(f"make_population: seeds = {seeds!r} is invalid: it must be a count or a list of seeds.")
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ConfigError(f"make_population: seeds = {seeds!r} is invalid: it must be >= 1.")
        return list(range(int(seeds)))
    out = list(seeds)
    if not out:
        raise ConfigError("make_population: seeds = [] is invalid: need at least one seed.")
    for s in out:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ConfigError(f"make_population: seeds = {out!r} is invalid: every seed must be an integer >= 0, not {s!r}.")
    dup = sorted({int(s) for s in out if out.count(s) > 1})
    if dup:
        raise ConfigError(f"make_population: seeds = {out!r} is invalid: seed(s) {dup} appear more than once.")
    return [int(s) for s in out]


def make_population(
    cfg: Any, seeds: int | Sequence[int] = 1, grid: dict[str, Sequence[Any]] | None = None
) -> Population:
    """Every combination of `grid` values (traced fields only) for every seed.

    `seeds` is a count (seeds 0..n-1) or an explicit list of distinct seeds >= 0.
    Member order is grid-major, seed-minor. Raises a ConfigError naming the field.
    """
    seed_list = _seed_list(seeds)
    if grid is not None and not isinstance(grid, dict):
        raise ConfigError(f"make_population: grid = {grid!r} is invalid: it must be a dict {{field: [values]}}.")
    grid = {str(k).replace("-", "_"): v for k, v in (grid or {}).items()}
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    name = type(cfg).__name__
    for key, values in grid.items():
        if key not in fields:
            raise _no_field(cfg, key)
        if is_static(fields[key]):
            raise ConfigError(
                f"sweep: {name}.{key} is a static field (it shapes the compiled "
                "program), so it cannot vary inside one population; run one sweep per value."
            )
        if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)) or np.ndim(values) == 0:
            raise ConfigError(f"sweep: grid[{key!r}] = {values!r} is invalid: it must be a list of {name}.{key} values.")
        if len(values) == 0:
            raise ConfigError(f"sweep: grid[{key!r}] is empty: give at least one {name}.{key} value.")
        for v in values:
            apply_overrides(cfg, {key: v})  # each value alone, checked as the field would check it
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
    """A 1-D mesh over the first `num_devices` devices, its axis named "pop"."""
    return Mesh(np.asarray(jax.devices()[:num_devices]), ("pop",))


def pop_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over the mesh; every other axis replicated."""
    return NamedSharding(mesh, PartitionSpec("pop"))


def shard(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf (leading axis P) on the mesh. On a mesh over several processes
    each process places only its own members (`rlx.distributed.put_global`)."""
    from rlx.distributed import put_global

    return put_global(tree, pop_sharding(mesh))
