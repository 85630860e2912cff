"""Frozen configs with static and traced fields.

A config is a `flax.struct` dataclass. Fields made with `static(...)` shape the
program (array sizes, loop lengths, network widths): they are part of the jit
cache key and must be hashable. Fields made with `traced(...)` are pytree leaves
(learning rate, clip, γ, ...): a population of configs is the same config with a
leading axis on those leaves, and changing them never recompiles.

Every field may carry bounds (`gt`, `ge`, `lt`, `le`) or `choices`; they are
checked when a config is built with concrete values, before anything compiles.
Tracers (inside jit/vmap) are never checked, so configs stay usable as pytrees.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from typing import Any, Iterable, Sequence, TypeVar

import jax
import numpy as np
from flax import struct

C = TypeVar("C")


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
        validate(self)

    cls.__post_init__ = __post_init__
    return struct.dataclass(cls, frozen=True)


def is_static(f: dataclasses.Field) -> bool:
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


def validate(cfg: Any) -> None:
    """Check every concrete field against its bounds, then the config's own `check()`.

    Raises a ValueError naming the field, the bad value and the accepted values.
    """
    name = type(cfg).__name__
    for f in dataclasses.fields(cfg):
        checks = f.metadata.get("checks") or {}
        value = getattr(cfg, f.name)
        if "choices" in checks and not isinstance(value, jax.core.Tracer):
            if value not in checks["choices"]:
                raise ValueError(
                    f"{name}.{f.name} = {value!r} is invalid: accepted values are "
                    f"{', '.join(map(repr, checks['choices']))}."
                )
        arr = _concrete(value)
        if arr is None:
            continue
        for key, (op, sym) in _OPS.items():
            if key in checks and not np.all(op(arr, checks[key])):
                bounds = " and ".join(f"{_OPS[k][1]} {checks[k]}" for k in _OPS if k in checks)
                raise ValueError(
                    f"{name}.{f.name} = {value!r} is invalid: it must be {bounds}."
                )
    check = getattr(cfg, "check", None)
    if check is not None:
        check()


def static_part(cfg: Any) -> tuple:
    """The hashable static fields of a config: two configs with equal static parts
    run the same compiled program."""
    return tuple((f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if is_static(f))


def field_names(cfg_or_cls: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(cfg_or_cls)]


def _parse_value(text: str, default: Any) -> Any:
    """Parse a CLI string into the type of the field's default."""
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean (true/false), got {text!r}")
    if isinstance(default, int):
        return int(float(text)) if "e" in text.lower() else int(text)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, tuple):
        items = [t for t in text.replace("(", "").replace(")", "").split(",") if t.strip()]
        elem = default[0] if default else 0
        return tuple(_parse_value(t.strip(), elem) for t in items)
    return text


def apply_overrides(cfg: C, overrides: Iterable[str] | dict[str, Any]) -> C:
    """Return `cfg` with `key=value` overrides applied (strings are parsed by field type).

    Unknown keys raise a ValueError listing the close matches.
    """
    items = overrides.items() if isinstance(overrides, dict) else (_split(o) for o in overrides)
    changes: dict[str, Any] = {}
    names = field_names(cfg)
    for key, value in items:
        key = key.replace("-", "_")
        if key not in names:
            close = difflib.get_close_matches(key, names, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"{type(cfg).__name__} has no field {key!r}.{hint} Fields: {', '.join(names)}."
            )
        if isinstance(value, str):
            try:
                value = _parse_value(value, getattr(cfg, key))
            except ValueError as err:
                raise ValueError(f"{type(cfg).__name__}.{key}: {err}") from None
        changes[key] = value
    return cfg.replace(**changes)


def _split(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key=value")
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
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            value = data[f.name]
            kwargs[f.name] = tuple(value) if isinstance(value, list) and is_static(f) else value
    return cls(**kwargs)


def dumps(cfg: Any) -> str:
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
