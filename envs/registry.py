"""`envs.make(name, **kwargs) -> (env, params)` over every env family rlx knows.

Names are `<family>/<id>`: `gymnax/CartPole-v1`, `brax/ant`, `rlx/deep-sea-treasure`.
Families are imported lazily, so making a gymnax env never imports brax.
Our own env packages (`rlx.envs.mo`, `rlx.envs.tabular`, ...) each expose a dict
`ENVS: {name: factory(**kwargs) -> (env, params)}` that is merged in here.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable

# Names are listed statically so errors and `rlx list` need no heavy import.
GYMNAX_IDS = (
    "CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0",
    "Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar",
    "Catch-bsuite", "DeepSea-bsuite", "MemoryChain-bsuite", "UmbrellaChain-bsuite",
    "DiscountingChain-bsuite", "MNISTBandit-bsuite", "SimpleBandit-bsuite",
    "FourRooms-misc", "MetaMaze-misc", "PointRobot-misc", "BernoulliBandit-misc",
    "GaussianBandit-misc", "Reacher-misc", "Swimmer-misc", "Pong-misc",
)  # fmt: skip
BRAX_IDS = (
    "ant", "fast", "halfcheetah", "hopper", "humanoid", "humanoidstandup",
    "inverted_double_pendulum", "inverted_pendulum", "pusher", "reacher", "swimmer", "walker2d",
)  # fmt: skip
# Packages that contribute `ENVS` dicts of our own environments.
PROVIDERS = ("rlx.envs.mo", "rlx.envs.tabular", "rlx.envs.testing")


def _own_envs() -> dict[str, Callable[..., tuple[Any, Any]]]:
    table: dict[str, Callable[..., tuple[Any, Any]]] = {}
    for module in PROVIDERS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:  # a provider package not written yet
            if err.name != module:
                raise
            continue
        table.update(getattr(mod, "ENVS", {}))
    return table


def names() -> list[str]:
    """Every registered env name."""
    return (
        [f"gymnax/{i}" for i in GYMNAX_IDS]
        + [f"brax/{i}" for i in BRAX_IDS]
        + sorted(_own_envs())
    )


def check_name(name: str) -> None:
    """Raise a ValueError listing close matches if `name` is not registered."""
    known = names()
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(
        f"env: unknown environment {name!r}.{hint} "
        f"Known families: gymnax/, brax/, rlx/ (run `rlx list` for all {len(known)} names)."
    )


def make(name: str, **kwargs) -> tuple[Any, Any]:
    """Build an environment by name and return `(env, params)`."""
    check_name(name)
    family, _, env_id = name.partition("/")
    if family == "gymnax":
        from rlx.envs.gymnax_adapter import make_gymnax

        return make_gymnax(env_id, **kwargs)
    if family == "brax":
        from rlx.envs.brax_adapter import make_brax

        return make_brax(env_id, **kwargs)
    return _own_envs()[name](**kwargs)
