"""Packages whose public names are their submodules, imported on first attribute access.

    __all__ = ["ppo", "sac"]
    __getattr__, __dir__ = submodules(__name__, __all__)

so `import rlx.agents; rlx.agents.ppo` works, `dir(rlx.agents)` lists the public names,
and importing the package imports no jax (the CLI's listing stays instant)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
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



class _Deferred(types.ModuleType):
    """Stands in `sys.modules` for a module not imported yet; the first attribute it does
    not have imports the real module, which then replaces it there."""

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr.endswith("__") and attr != "__path__":
            raise AttributeError(attr)  # the import system's probes do not load it
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


def defer_import(name: str) -> None:
    """Make `import name` cheap until the module is used: a stand-in goes into
    `sys.modules`, and the real module is imported on its first attribute access. Nothing
    happens if it is already imported or not installed. For packages that import a heavy
    module at module level but use it only in a few functions. (The standard
    `importlib.util.LazyLoader` does not help here: under Python 3.11 the `import`
    statement reads the module's `__spec__`, which loads it.)"""
    if name in sys.modules or importlib.util.find_spec(name) is None:
        return
    sys.modules[name] = _Deferred(name)
