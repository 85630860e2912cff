"""Multi-objective JAX environments with vector rewards of shape `(reward_dim,)`.

Each env exposes `reward_dim`, `reward_low` / `reward_high` (`[d]`), `mo_spec`
(the pinned hypervolume reference point, expected-utility weight set and
evaluation gamma), and `pareto_front(gamma) -> [n, d]` of discounted returns with
`pareto_front_exact` saying whether that front is exact or a lower bound.

`ENVS` maps names to factories `factory(**kwargs) -> (env, params)`; the env
registry (`rlx.envs.registry`) merges it.
"""

from rlx.envs.mo.deep_sea_treasure import DeepSeaTreasure, DSTParams, make_deep_sea_treasure
from rlx.envs.mo.fruit_tree import FruitTree, make_fruit_tree
from rlx.envs.mo.minecart import Minecart, make_minecart
from rlx.envs.mo.resource_gathering import ResourceGathering, make_resource_gathering
from rlx.envs.mo.spec import MOSpec
from rlx.envs.registry import forwards_kwargs


@forwards_kwargs(DSTParams)
def _dst_concave(**params):
    return make_deep_sea_treasure("concave", **params)


ENVS = {
    "rlx/deep-sea-treasure": make_deep_sea_treasure,
    "rlx/deep-sea-treasure-concave": _dst_concave,
    "rlx/fruit-tree": make_fruit_tree,
    "rlx/minecart": make_minecart,
    "rlx/resource-gathering": make_resource_gathering,
}

__all__ = [
    "ENVS",
    "MOSpec",
    "DeepSeaTreasure",
    "FruitTree",
    "Minecart",
    "ResourceGathering",
    "make_deep_sea_treasure",
    "make_fruit_tree",
    "make_minecart",
    "make_resource_gathering",
]
