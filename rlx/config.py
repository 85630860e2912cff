"""Frozen configs with static and traced fields.

A config is a `flax.struct` dataclass. Fields made with `static(...)` shape the
program (array sizes, loop lengths, network widths): they are part of the jit
cache key and must be hashable. Fields made with `traced(...)` are pytree leaves
(learning rate, clip, γ, ...): a population of configs is the same config with a
leading axis on those leaves, and changing them never recompiles.

Every field may carry bounds (`gt`, `ge`, `lt`, `le`) or `choices`; they are
checked when a config is built with concrete values, before anything compiles, and
so is the type the default implies: an int default takes integers, a float default
finite numbers (`finite=False` allows ±inf), a bool default True or False, a tuple
default a tuple of its element type (`items=int` for an empty default), each entry
bounded. Tracers (inside jit/vmap) are never checked, so configs stay usable as pytrees.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from typing import Any, Iterable, Sequence, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

C = TypeVar("C")


class ConfigError(ValueError):
    """A config field, override or sweep value that cannot be used; the message is one
    line naming the field."""


def static(default: Any, doc: str = "", **checks: Any) -> Any:
    """A field that shapes the program: hashable, part of the jit cache key."""
    return dataclasses.field(
        default=default, metadata={"pytree_node": False, "doc": doc, "checks": checks}
    )


def traced(default: Any, doc: str = "", **checks: Any) -> Any:
    """A field that is a pytree leaf: vmappable, never triggers a recompile."""
    return dataclasses.field(
        default=default, metadata={"pytree_node": True, "doc": doc, "checks": checks}
    )


def config(cls: type[C]) -> type[C]:
    """Class decorator: a frozen flax.struct dataclass that validates itself."""
    user_post_init = getattr(cls, "__post_init__", None)

    def __post_init__(self):
        if user_post_init is not None:
            user_post_init(self)
        for f in dataclasses.fields(self):  # static tuples must stay hashable
            if is_static(f) and isinstance(f.default, tuple) and type(getattr(self, f.name)) is list:
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))
        validate(self)

    cls.__post_init__ = __post_init__
    return struct.dataclass(cls, frozen=True)


def is_static(f: dataclasses.Field) -> bool:
    """Whether a config field is static (part of the jit cache key) rather than traced."""
    return not f.metadata.get("pytree_node", True)


def _concrete(value: Any) -> np.ndarray | None:
    """The value as a numpy array if it is concrete and numeric, else None."""
    if isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        return None  # spans processes (rlx.distributed); it was checked before it was placed
    if isinstance(value, (bool, int, float, np.ndarray, np.generic, jax.Array)):
        arr = np.asarray(value)
        return arr if arr.dtype.kind in "biuf" else None
    return None


_OPS = {
    "gt": (np.greater, ">"),
    "ge": (np.greater_equal, ">="),
    "lt": (np.less, "<"),
    "le": (np.less_equal, "<="),
}


def _kind(value: Any) -> str | None:
    """'none', 'str', 'bool', 'int', 'float' or 'seq' (a plain tuple or list); None for
    anything else (tracers, specs, placeholders jax puts in a pytree)."""
    if value is None:
        return "none"
    if isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, str):
        return "str"
    if type(value) in (tuple, list):
        return "seq"
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    if isinstance(value, (np.ndarray, jax.Array)):
        for kind, dtype in (("bool", jnp.bool_), ("int", jnp.integer), ("float", jnp.floating)):
            if jnp.issubdtype(value.dtype, dtype):
                return kind
    return None


def _want(default: Any) -> str | None:
    """The kind a field's default asks for, or None when it implies none."""
    kind = _kind(default)
    return kind if kind in ("str", "bool", "int", "float") else None


_NOUN = {"int": ("an integer", "integers"), "float": ("a finite number", "finite numbers"),
         "bool": ("True or False", "True or False"), "str": ("a string", "strings")}  # fmt: skip
_OK = {"int": ("int",), "float": ("int", "float"), "bool": ("bool",), "str": ("str",)}


def _bounds(checks: dict) -> str:
    return " and ".join(f"{_OPS[k][1]} {checks[k]}" for k in _OPS if k in checks)


def _in_bounds(value: Any, checks: dict, finite: bool) -> bool:
    arr = _concrete(value)
    if arr is None:
        return True
    if finite and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        return False
    return all(np.all(op(arr, checks[key])) for key, (op, _) in _OPS.items() if key in checks)


def _problem(value: Any, default: Any, checks: dict, strict: bool) -> str | None:
    """What `value` must be, if it is not; None when it is fine or cannot be checked.

    `strict` (static fields) refuses values of unknown kind; traced fields may hold
    tracers and jax placeholders, so only values of a known wrong kind are refused.
    """
    finite = checks.get("finite", True)
    kind = _kind(value)
    if isinstance(default, tuple):
        elem = _want(default[0]) if default else {int: "int", float: "float"}.get(checks.get("items"))
        noun = "numbers" if elem is None or elem == "float" and not finite else _NOUN[elem][1]
        need = f"a tuple of {noun}" + (f" {_bounds(checks)}" if _bounds(checks) else "")
        if kind == "seq":
            items = value
        elif kind is None and not strict and isinstance(value, (np.ndarray, jax.Array)):
            items = [value]
        elif kind is None and not strict:
            return None
        else:
            return need
        for item in items:
            k = _kind(item)
            if k is None and not strict:
                continue
            if k not in (_OK[elem] if elem else ("int", "float")) or not _in_bounds(item, checks, finite):
                return need
        return None
    want = _want(default)
    if kind is None and not strict or want is None:
        if want is None and not _in_bounds(value, checks, False):
            return _bounds(checks)
        return None
    if kind not in _OK[want] or strict and isinstance(value, (np.ndarray, jax.Array)):
        if "choices" in checks:
            return "one of " + ", ".join(map(repr, checks["choices"]))
        return "a number" if want == "float" and not finite else _NOUN[want][0]
    if want == "float" and finite and not _in_bounds(value, {}, True):
        return _NOUN["float"][0]
    if want == "int" and not _in_bounds(value, {"lt": 2**31, "gt": -(2**31)}, False):
        return "an integer of magnitude below 2**31 (jax computes in int32)"
    if not _in_bounds(value, checks, False):
        return _bounds(checks)
    return None


def _show(value: Any) -> str:
    """repr on one line, cut short for big arrays."""
    with np.printoptions(threshold=8, edgeitems=2, linewidth=10**9):
        text = " ".join(repr(value).split())
    return text if len(text) <= 200 else text[:197] + "..."


def validate(cfg: Any) -> None:
    """Check every concrete field against its type and bounds, then the config's own `check()`.

    Raises a ConfigError naming the field, the bad value and the accepted values.
    """
    name = type(cfg).__name__
    for f in dataclasses.fields(cfg):
        checks = f.metadata.get("checks") or {}
        value = getattr(cfg, f.name)
        default = None if f.default is dataclasses.MISSING else f.default
        problem = _problem(value, default, checks, strict=is_static(f))
        if problem is not None:
            raise ConfigError(f"{name}.{f.name} = {_show(value)} is invalid: it must be {problem}.")
        if "choices" in checks and _kind(value) in ("str", "int", "float", "bool", "none"):
            if value not in checks["choices"]:
                raise ConfigError(
                    f"{name}.{f.name} = {value!r} is invalid: accepted values are "
                    f"{', '.join(map(repr, checks['choices']))}."
                )
    check = getattr(cfg, "check", None)
    if check is not None:
        try:
            check()
        except ValueError as err:
            if type(err) is not ValueError:
                raise
            raise ConfigError(str(err)).with_traceback(err.__traceback__) from None


def static_part(cfg: Any) -> tuple:
    """The hashable static fields of a config: two configs with equal static parts
    run the same compiled program."""
    return tuple((f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if is_static(f))


def field_names(cfg_or_cls: Any) -> list[str]:
    """The field names of a config (instance or class), in order."""
    return [f.name for f in dataclasses.fields(cfg_or_cls)]


def _parse_value(text: str, default: Any) -> Any:
    """Parse a CLI string into the type of the field's default."""
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"could not parse {text!r} as a boolean (true/false)")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            number = None
        if number is None or not number.is_integer():
            raise ConfigError(f"could not parse {text!r} as an integer")
        return int(number)
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"could not parse {text!r} as a float") from None
    if isinstance(default, np.ndarray) and default.ndim == 1:  # a vector field, e.g. MO-PPO's weights
        default = tuple(default.tolist())
    if isinstance(default, tuple):
        items = [t for t in text.replace("(", "").replace(")", "").split(",") if t.strip()]
        elem = default[0] if default else 0
        return tuple(_parse_value(t.strip(), elem) for t in items)
    return text


def _no_field(cfg: Any, key: str) -> ConfigError:
    names = field_names(cfg)
    close = difflib.get_close_matches(key, names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"{type(cfg).__name__} has no field {key!r}.{hint} Fields: {', '.join(names)}.")


def apply_overrides(cfg: C, overrides: Iterable[str] | dict[str, Any]) -> C:
    """Return `cfg` with `key=value` overrides applied (strings are parsed by field type).

    Unknown keys raise a ConfigError listing the close matches.
    """
    items = overrides.items() if isinstance(overrides, dict) else (_split(o) for o in overrides)
    changes: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    for key, value in items:
        key = key.replace("-", "_")
        if key not in fields:
            raise _no_field(cfg, key)
        if isinstance(value, str):
            default = fields[key].default
            if default is None or default is dataclasses.MISSING:
                default = getattr(cfg, key)
            try:
                value = _parse_value(value, default)
            except ValueError as err:
                raise ConfigError(f"{type(cfg).__name__}.{key}: {err}") from None
        changes[key] = value
    return cfg.replace(**changes)


def _split(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict; traced leaves of a population become lists."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, (np.ndarray, jax.Array)):
            value = np.asarray(value).tolist()
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """The config of class `cls` from `to_dict`'s output; missing fields take their defaults."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            value = data[f.name]
            kwargs[f.name] = tuple(value) if isinstance(value, list) and is_static(f) else value
    return cls(**kwargs)


def dumps(cfg: Any) -> str:
    """The config as indented JSON, with its class name under "class"."""
    return json.dumps({"class": type(cfg).__name__, **to_dict(cfg)}, indent=2)


def stack(configs: Sequence[C]) -> C:
    """Stack configs along a new leading population axis.

    All configs must share their static part: one compiled program serves them all.
    """
    if not configs:
        raise ValueError("stack: need at least one config")
    first = static_part(configs[0])
    for i, c in enumerate(configs[1:], 1):
        if static_part(c) != first:
            diff = [k for (k, a), (_, b) in zip(first, static_part(c)) if a != b]
            raise ValueError(
                f"stack: config {i} differs from config 0 in static fields {diff}; "
                "static fields shape the program, so sweep them as separate groups."
            )
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *configs)


def describe(cls: type) -> list[tuple[str, Any, str, str]]:
    """(name, default, 'static'|'traced', doc) for every field, for CLI help and docs."""
    rows = []
    for f in dataclasses.fields(cls):
        kind = "static" if is_static(f) else "traced"
        rows.append((f.name, f.default, kind, f.metadata.get("doc", "")))
    return rows
