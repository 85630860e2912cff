"""`envs.make(name, **kwargs) -> (env, params)` over every env family rlx knows.

Names are `<family>/<id>`: `gymnax/CartPole-v1`, `brax/ant`, `rlx/deep-sea-treasure`.
Families are imported lazily, so making a gymnax env never imports brax.
Our own env packages (`rlx.envs.mo`, `rlx.envs.tabular`, ...) each expose a dict
`ENVS: {name: factory(**kwargs) -> (env, params)}` that is merged in here.
Third-party suites add theirs with `register(name, factory)`, or, to be seen by the
command line too, with an entry point in the group `rlx.envs` (see `ENTRY_POINT_GROUP`).
`make` refuses keyword arguments the env does not take before building anything; a
factory whose `**kwargs` go elsewhere says where with `@forwards_kwargs(target)`.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import warnings
from collections.abc import Mapping
from typing import Any, Callable

from rlx.errors import RunError

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
# Packages that contribute `ENVS` dicts of our own environments, and our adapters of
# suites that are optional extras (craftax/, xland/): those import their package only
# when an env is made (`import_suite`).
PROVIDERS = ("rlx.envs.mo", "rlx.envs.tabular", "rlx.envs.probe", "rlx.envs.craftax_adapter", "rlx.envs.xland_adapter",
             "rlx.envs.mujoco", "rlx.envs.jumanji_adapter", "rlx.envs.playground_adapter")
# Installed distributions add env suites through entry points in this group. Each entry
# point names either a dict `{name: factory}` or a callable that calls `register`:
#
#     [project.entry-points."rlx.envs"]
#     mysuite = "mysuite:ENVS"
ENTRY_POINT_GROUP = "rlx.envs"


class EnvArgumentError(TypeError, ValueError):
    """`make` got a keyword argument the environment does not take."""


class EnvEntryPointWarning(UserWarning):
    """An installed `rlx.envs` entry point failed to load; its envs are left out."""


class EnvSuiteMissingError(RunError, ImportError):
    """An env suite's package (an optional extra of rlx) is not installed."""


def import_suite(module: str, extra: str, name: str) -> Any:
    """Import `module` of an optional env suite for `name`; if its package is missing, an
    EnvSuiteMissingError in one line naming the extra to install."""
    package = module.split(".")[0]
    if importlib.util.find_spec(package) is None:
        raise EnvSuiteMissingError(f"{name} needs the {package} package, which is not installed: "
                                   f"pip install 'rlx[{extra}]' (the versions in requirements.lock).")  # fmt: skip
    return importlib.import_module(module)


def forwards_kwargs(*targets: Callable, exclude: tuple[str, ...] = ()) -> Callable:
    """Mark a factory whose `**kwargs` go on to `targets` (less the names in
    `exclude`, which it fills itself), so `make` can tell which keywords it takes."""

    def mark(fn: Callable) -> Callable:
        fn.__kwargs_to__ = (targets, tuple(exclude))
        return fn

    return mark


_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _signature(fn: Any, skip: tuple[str, ...] = (), optional: bool = False) -> tuple[list[str], bool] | None:
    """(`fn`'s keyword arguments, whether it takes `**kwargs`); None without a signature."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    names = [p.name for p in params if p.kind in _KEYWORD and p.name not in skip
             and not (optional and p.default is p.empty)]  # fmt: skip
    return names, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def keywords(fn: Any, skip: tuple[str, ...] = ()) -> list[str] | None:
    """The keyword arguments `fn` takes, following `**kwargs` into `@forwards_kwargs`
    targets and, for a class, into the optional arguments of its bases' `__init__`;
    None when that cannot be told."""
    sig = _signature(fn, skip)
    if sig is None:
        return None
    names, var = sig
    if not var:
        return names
    if isinstance(fn, type):
        for base in fn.__mro__[1:]:
            if base is object or "__init__" not in vars(base):
                continue
            sig = _signature(base, skip, optional=True)
            if sig is None:
                return None
            names += sig[0]
            if not sig[1]:
                return list(dict.fromkeys(names))
        return None
    targets, exclude = getattr(fn, "__kwargs_to__", (None, ()))
    if targets is None:
        return None
    for target in targets:
        more = keywords(target, skip + exclude)
        if more is None:
            return None
        names += more
    return list(dict.fromkeys(names))


def accepted_kwargs(name: str) -> list[str] | None:
    """The keyword arguments `make(name, ...)` takes; None when that cannot be told."""
    check_name(name)
    family, _, env_id = name.partition("/")
    if family == "gymnax":
        import gymnax.registration

        factory = getattr(gymnax.registration, "_registry", {}).get(env_id)
        return None if factory is None else keywords(factory)
    if family == "brax":
        import warnings

        from rlx.envs.brax_adapter import make_brax

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # brax warns that its env collection is unmaintained
            from brax import envs as brax_envs
        own = _signature(make_brax, ("env_id",))[0]
        upstream = getattr(brax_envs, "_envs", {}).get(env_id)
        more = None if upstream is None else keywords(upstream)
        return None if more is None else list(dict.fromkeys(own + more))
    return keywords(_own_envs()[name])


def check_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Raise an EnvArgumentError naming the keywords `name` does not take, and those it does."""
    if not kwargs:
        return
    accepted = accepted_kwargs(name)
    if accepted is None:
        return
    bad = [k for k in kwargs if k not in accepted]
    if not bad:
        return
    close = [c for k in bad for c in difflib.get_close_matches(k, accepted, n=1)]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise EnvArgumentError(
        f"{name} takes no argument{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))}; "
        f"accepted: {', '.join(accepted) or 'none'}.{hint}"
    )


def _provided() -> dict[str, Callable[..., tuple[Any, Any]]]:
    """The envs of the PROVIDERS packages."""
    table: dict[str, Callable[..., tuple[Any, Any]]] = {}
    for module in PROVIDERS:
        table.update(importlib.import_module(module).ENVS)
    return table


def _own_envs() -> dict[str, Callable[..., tuple[Any, Any]]]:
    table = _provided()
    table.update(_entry_point_envs())
    table.update(_REGISTERED)
    return table


_REGISTERED: dict[str, Callable[..., tuple[Any, Any]]] = {}
# The envs of the `rlx.envs` entry points, loaded on first need (None: not yet), and one
# line per entry point that failed to load.
_ENTRY_POINTS: dict[str, Callable[..., tuple[Any, Any]]] | None = None
_ENTRY_POINT_ERRORS: list[tuple[str, str, str]] = []  # (distribution, entry point, the line)
# While an entry point loads, `register` adds to the innermost table here.
_LOADING: list[dict[str, Callable[..., tuple[Any, Any]]]] = []


def _check_new(name: str, factory: Any, table: Mapping[str, Any]) -> None:
    """Raise a ValueError if `name` cannot be registered for `factory` over `table`."""
    family, sep, env_id = str(name).partition("/")
    if not isinstance(name, str) or not sep or not family or not env_id or family in ("gymnax", "brax"):
        raise ValueError(f"env name {name!r} is invalid: it must look like FAMILY/ID, with a family of its own.")
    if not callable(factory):
        raise ValueError(f"env {name!r}: the factory {factory!r} is not callable; register a function "
                         "factory(**kwargs) -> (env, params).")  # fmt: skip
    old = table.get(name)
    if old is not None and old is not factory:
        origin = getattr(getattr(old, "func", old), "__module__", None) or old  # a functools.partial: its function's
        raise ValueError(f"env {name!r} is already registered (by {origin}).")


def _entry_point_envs() -> dict[str, Callable[..., tuple[Any, Any]]]:
    """The envs of every installed `rlx.envs` entry point, loaded once. A broken entry
    point is left out with a one-line EnvEntryPointWarning; the others still load."""
    global _ENTRY_POINTS
    if _ENTRY_POINTS is not None:
        return _ENTRY_POINTS
    _ENTRY_POINTS = {}  # set first: an entry point that calls register or names does not load them again
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(getattr(ep, "dist", None), "name", None) or "an unknown distribution"
        try:
            table = _load_entry_point(ep)
        except Exception as err:  # any failure of third-party code: one line, and the other suites load
            text = str(err).strip().splitlines()
            line = (f"env entry point {ep.name!r} = {ep.value!r} of {dist} ({ENTRY_POINT_GROUP}) failed to load: "
                    f"{type(err).__name__}: {text[0].rstrip('.') if text else ''}; "
                    f"its envs are left out (fix or uninstall {dist}).")  # fmt: skip
            _ENTRY_POINT_ERRORS.append((dist, ep.name, line))
            warnings.warn(line, EnvEntryPointWarning, stacklevel=3)
            continue
        _ENTRY_POINTS.update(table)
    return _ENTRY_POINTS


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> dict[str, Callable[..., tuple[Any, Any]]]:
    """`ep`'s envs: its dict, or what its callable registers (or returns, as a dict)."""
    table: dict[str, Callable[..., tuple[Any, Any]]] = {}
    _LOADING.append(table)
    try:
        obj, what = ep.load(), "it names"
        if callable(obj) and not isinstance(obj, Mapping):
            obj, what = obj(), "calling it returned"
        if obj is not None and not isinstance(obj, Mapping):
            raise TypeError(f"{what} a value of type {type(obj).__name__}; name a dict {{name: factory}} "
                            "or a function that calls rlx.envs.register")  # fmt: skip
    finally:
        _LOADING.pop()
    taken = {**_provided(), **(_ENTRY_POINTS or {})}
    for name, factory in {**table, **(obj or {})}.items():
        _check_new(name, factory, taken)
        table[name] = factory
    return table


def entry_point_errors() -> list[str]:
    """One line for each `rlx.envs` entry point that failed to load (loading them first)."""
    _entry_point_envs()
    return [line for _, _, line in _ENTRY_POINT_ERRORS]


def register(name: str, factory: Callable[..., tuple[Any, Any]]) -> None:
    """Add an env suite's env: `factory(**kwargs) -> (env, params)` under `name`
    (`<family>/<id>`, a family other than gymnax/ and brax/). `make`, `names` and
    `rlx list` see it at once; a name already taken by another factory is refused.
    (For the command line to see it too, register from an entry point: ENTRY_POINT_GROUP.)"""
    _check_new(name, factory, {**_own_envs(), **(_LOADING[-1] if _LOADING else {})})
    (_LOADING[-1] if _LOADING else _REGISTERED)[name] = factory


_STATIC_NAMES = frozenset([f"gymnax/{i}" for i in GYMNAX_IDS] + [f"brax/{i}" for i in BRAX_IDS])


def names() -> list[str]:
    """Every registered env name."""
    return (
        [f"gymnax/{i}" for i in GYMNAX_IDS]
        + [f"brax/{i}" for i in BRAX_IDS]
        + sorted(_own_envs())
    )


def check_name(name: str) -> None:
    """Raise a ValueError listing close matches if `name` is not registered."""
    if name in _STATIC_NAMES:
        return  # known without importing any suite
    known = names()
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    families = ["gymnax/", "brax/", *sorted({n.partition("/")[0] + "/" for n in known} - {"gymnax/", "brax/"})]
    broken = ""
    if _ENTRY_POINT_ERRORS:  # the suite may be one that failed to load: say so, its own first
        family = str(name).partition("/")[0]
        lines = sorted(_ENTRY_POINT_ERRORS, key=lambda e: family not in (e[0], e[1]))
        more = f" ({len(lines) - 1} more in rlx.envs.registry.entry_point_errors())" if len(lines) > 1 else ""
        broken = f" Note: {lines[0][2]}{more}"
    raise ValueError(
        f"env: unknown environment {name!r}.{hint} "
        f"Known families: {', '.join(families)} (run `rlx list` for all {len(known)} names).{broken}"
    )


def make(name: str, **kwargs) -> tuple[Any, Any]:
    """Build an environment by name and return `(env, params)`."""
    check_name(name)
    check_kwargs(name, kwargs)
    family, _, env_id = name.partition("/")
    if family == "gymnax":
        from rlx.envs.gymnax_adapter import make_gymnax

        return make_gymnax(env_id, **kwargs)
    if family == "brax":
        from rlx.envs.brax_adapter import make_brax

        return make_brax(env_id, **kwargs)
    return _own_envs()[name](**kwargs)
