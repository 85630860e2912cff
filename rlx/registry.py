"""The algorithm registry: every family registers its algorithms here, and `rlx list`,
`rlx train`, `rlx sweep` and the docs read it.

An entry names its module and the attributes in it as strings, so listing the registry
imports no agent code (and no jax). The families register themselves in their
packages' `__init__` (`rlx.agents`, `rlx.agents.ddp`, ...), which `entries()` imports
once; a third-party package registers the same way, before the CLI reads the registry.

    from rlx.registry import Algorithm, register
    register(Algorithm("my-ppo", "PPO with my advantage", "my_pkg.agent", "MyConfig"))
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any

KINDS = ("agent", "trainer")


@dataclass(frozen=True)
class Algorithm:
    """One registered algorithm.

    kind "agent": `module.<builder>(env, cfg) -> rlx.types.Agent`, trained by the Runner
    (`rlx train` / `rlx sweep`). kind "trainer": a driver of its own, run by `command`.
    presets: `{name: factory in module, or None for config()}`; the first is the default.
    """

    name: str
    summary: str
    module: str
    config: str = ""  # the config class in module (agents)
    builder: str = "make_agent"
    presets: dict = field(default_factory=lambda: {"default": None})
    family: str = ""
    kind: str = "agent"
    command: str = ""  # how to run it, for trainers (and an example for agents)
    plain_evaluation: bool = True  # greedy episodes with `rlx.evaluation.evaluate` mean something
    evaluation_note: str = ""  # where its own evaluation lives, when they do not

    def load(self) -> tuple[Any, type, Any]:
        """`(module, config class or None, builder)`, imported now."""
        module = importlib.import_module(self.module)
        return module, getattr(module, self.config) if self.config else None, getattr(module, self.builder)

    def make_config(self, preset: str = "default") -> Any:
        """The preset's config (the config class's defaults for a None factory)."""
        if preset not in self.presets:
            raise ValueError(f"preset {preset!r} is invalid for {self.name}: accepted values are {', '.join(self.presets)}.")
        module, config_cls, _ = self.load()
        factory = self.presets[preset]
        return getattr(module, factory)() if factory else config_cls()


_REGISTRY: dict[str, Algorithm] = {}
_LOADED = False


def register(algorithm: Algorithm) -> Algorithm:
    """Add `algorithm`; a second registration of the same name must be identical."""
    if algorithm.kind not in KINDS:
        raise ValueError(f"Algorithm.kind = {algorithm.kind!r} is invalid: accepted values are {', '.join(KINDS)}.")
    old = _REGISTRY.get(algorithm.name)
    if old is not None and old != algorithm:
        raise ValueError(f"algorithm {algorithm.name!r} is already registered by {old.module}.")
    _REGISTRY[algorithm.name] = algorithm
    return algorithm


def entries() -> dict[str, Algorithm]:
    """Every registered algorithm by name, in registration order."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        importlib.import_module("rlx.agents")  # the built-in families register on import
    return dict(_REGISTRY)


def names(kind: str | None = None) -> list[str]:
    """The registered algorithm names, of one `kind` or all."""
    return [n for n, a in entries().items() if kind is None or a.kind == kind]


def get(name: str) -> Algorithm:
    """The entry for `name`; an unknown name is one line with the closest names."""
    found = entries()
    if name not in found:
        close = difflib.get_close_matches(name, list(found), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown algorithm {name!r}.{hint} Accepted values: {', '.join(found)}.")
    return found[name]
