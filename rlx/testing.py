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


@contextlib.contextmanager
def raises_before_compile(error: type[BaseException] = ValueError, match: str | None = None):
    """The block must raise `error` (its message matching `match`) without compiling
    anything: bad input fails before the expensive part starts.

        with raises_before_compile(match="batch_size"):
            dqn.DQNConfig(batch_size=0)
    """
    import pytest

    with count_compiles() as compiles:
        with pytest.raises(error, match=match):
            yield
    assert compiles == [], f"{len(compiles)} compilation(s) before the error"


def train_and_evaluate(agent, cfg, env, env_params, seeds: int, episodes: int, eval_seed: int = 0):
    """Train `seeds` members of `cfg` with a `Runner`, then evaluate each final policy
    over `episodes` episodes (member i on key i of `split(key(eval_seed), seeds)`).
    Returns the Runner's result and the mean evaluation return per member `[seeds]`."""
    import numpy as np

    from rlx.evaluation import evaluate
    from rlx.population import make_population
    from rlx.train import Runner

    pop = make_population(cfg, seeds=seeds)
    result = Runner(agent, pop, env_params, progress=False).run()
    returns = jax.jit(jax.vmap(lambda p, c, k: evaluate(agent, p, c, env, env_params, k, episodes)["return"].mean()))(
        agent.policy_params(result.state), pop.cfg, jax.random.split(jax.random.key(eval_seed), seeds)
    )
    return result, np.asarray(returns)


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
