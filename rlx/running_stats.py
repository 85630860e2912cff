"""Running mean and variance for observation normalisation.

The statistics live in the agent's state, not in an env wrapper: they must be
shared by every env of the batch, and they must travel with the policy params so
that evaluation and deployment see the same normalisation as training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningStats:
    """mean, var: `[*obs_shape]`; count: scalar float."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array


def init_stats(shape: tuple[int, ...]) -> RunningStats:
    """Statistics of shape `shape`: mean 0, variance 1, a tiny count."""
    return RunningStats(jnp.zeros(shape), jnp.ones(shape), jnp.asarray(1e-4))


def update_stats(stats: RunningStats, batch: jax.Array) -> RunningStats:
    """Merge a batch `[N, *obs_shape]` into the statistics (Chan et al.'s parallel update)."""
    batch = batch.reshape((-1,) + stats.mean.shape)
    n = batch.shape[0]
    b_mean = batch.mean(0)
    b_var = batch.var(0)
    delta = b_mean - stats.mean
    total = stats.count + n
    mean = stats.mean + delta * n / total
    m2 = stats.var * stats.count + b_var * n + delta**2 * stats.count * n / total
    return RunningStats(mean, m2 / total, total)


def normalize(stats: RunningStats, obs: jax.Array, clip: float = 10.0) -> jax.Array:
    """`(obs - mean) / std`, clipped to `[-clip, clip]`; `obs` `[..., *shape]`."""
    return jnp.clip((obs - stats.mean) / jnp.sqrt(stats.var + 1e-8), -clip, clip)
