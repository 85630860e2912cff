"""Finite MDPs as arrays (`P[s, a, s']`, reward distributions, terminal masks), their
generators and grid worlds, and `to_env` to run them on rlx's env interface.

`ENVS` maps registry names to `factory(**kwargs) -> (env, params)`.
"""

from __future__ import annotations

import functools

import jax

from rlx.envs.registry import forwards_kwargs
from rlx.envs.tabular.env import TabularEnv, TabularParams, TabularState, to_env, to_gymnax
from rlx.envs.tabular.grids import ddp_grid, frozen_lake, grid_mdp, risky_grid
from rlx.envs.tabular.mdp import (
    SparseMDP, TabularMDP, achievable_returns, astype, layered_mdp, make_mdp, outcomes, random_mdp,
    reward_range, to_sparse, validate_mdp,
)  # fmt: skip


def _ddp_grid(bernoulli: bool = False, max_steps: int = 16):
    name = "rlx/ddp-grid-bernoulli" if bernoulli else "rlx/ddp-grid"
    return to_env(ddp_grid(bernoulli), max_steps, name)


@forwards_kwargs(random_mdp, exclude=("key",))
def _random(seed: int = 0, num_states: int = 5, num_actions: int = 3, max_steps: int = 10, **kw):
    return to_env(random_mdp(jax.random.key(seed), num_states, num_actions, **kw), max_steps, "rlx/random-mdp")


@forwards_kwargs(frozen_lake)
def _frozen_lake(max_steps: int = 100, **kw):
    return to_env(frozen_lake(**kw), max_steps, "rlx/frozen-lake")


@forwards_kwargs(risky_grid)
def _risky_grid(max_steps: int = 12, **kw):
    return to_env(risky_grid(**kw), max_steps, "rlx/ddp-risky-grid")


ENVS = {
    "rlx/ddp-grid": functools.partial(_ddp_grid, False),
    "rlx/ddp-grid-bernoulli": functools.partial(_ddp_grid, True),
    "rlx/frozen-lake": _frozen_lake,
    "rlx/ddp-risky-grid": _risky_grid,
    "rlx/random-mdp": _random,
}

__all__ = [
    "ENVS", "SparseMDP", "TabularEnv", "TabularMDP", "TabularParams", "TabularState", "astype",
    "ddp_grid", "frozen_lake", "grid_mdp", "layered_mdp", "make_mdp", "outcomes", "random_mdp",
    "reward_range", "risky_grid", "to_env", "to_sparse", "validate_mdp",
]  # fmt: skip
