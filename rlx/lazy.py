"""Packages whose public names are their submodules, imported on first attribute access.

    __all__ = ["ppo", "sac"]
    __getattr__, __dir__ = submodules(__name__, __all__)

so `import rlx.agents; rlx.agents.ppo` works, `dir(rlx.agents)` lists the public names,
and importing the package imports no jax (the CLI's listing stays instant)."""

from __future__ import annotations

import importlib
from typing import Callable, Sequence


def submodules(package: str, names: Sequence[str]) -> tuple[Callable, Callable]:
    """`(__getattr__, __dir__)` for `package`, exposing `names` as lazily imported submodules."""
    public = tuple(names)

    def __getattr__(name: str):
        if name in public:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(public)

    return __getattr__, __dir__
