"""Helpers for testing agents built on rlx."""

from __future__ import annotations

import contextlib

import jax


@contextlib.contextmanager
def count_compiles():
    """Collects one entry per XLA compilation while the block runs:

        with count_compiles() as compiles:
            train(key, cfg.replace(lr=1e-3), env_params)
        assert not compiles  # changing a traced field must not recompile
    """
    events: list[str] = []

    def listener(event, duration, **kwargs):
        if "backend_compile" in event:
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def host_leaves(tree) -> list:
    """Every leaf of `tree` as a numpy array (typed keys as their key data), in tree
    order: what bitwise comparisons of two states need."""
    import numpy as np

    out = []
    for x in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        out.append(np.asarray(x))
    return out
