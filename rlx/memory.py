"""Memory checks before a run compiles: the population's persistent state (from
`jax.eval_shape`, so nothing is allocated) and, once compiled, the program's temporaries,
against the memory the devices have. A run that cannot fit is refused in one line naming
the field to lower, instead of failing deep inside XLA (or taking the whole machine)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np

from rlx.errors import MemoryEstimateError


def fmt_bytes(n: float) -> str:
    """`n` bytes in decimal units: "512 B", "27.2 MB"."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} B"


def host_available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, capped by a cgroup memory limit; None if unknown."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
            if text.isdigit():
                limit = int(text)
                usage_path = path.replace("memory.max", "memory.current").replace("limit_in_bytes", "usage_in_bytes")
                with open(usage_path) as f:
                    usage = int(f.read().strip())
                if limit < (1 << 60):
                    avail = min(avail or limit, limit - usage)
        except (OSError, ValueError):
            continue
    return avail


def available_bytes(devices: list) -> tuple[int | None, str]:
    """Free memory for a population spread evenly over `devices`: `(bytes, where)`.

    On CPU every device shares the host's RAM; an accelerator reports its own."""
    stats = [d.memory_stats() if d.platform != "cpu" else None for d in devices]
    if all(s and "bytes_limit" in s for s in stats):
        free = min(s["bytes_limit"] - s.get("bytes_in_use", 0) for s in stats)
        return free * len(devices), f"{devices[0].platform} memory on {len(devices)} device(s)"
    return host_available_bytes(), "host RAM"


def leaf_bytes(x: Any) -> int:
    """Bytes of an array or ShapeDtypeStruct (a typed PRNG key counts its key data)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        itemsize = 8  # threefry: two uint32 words
    else:
        itemsize = np.dtype(x.dtype).itemsize
    return int(np.prod(x.shape, dtype=np.int64)) * itemsize


def tree_bytes(tree: Any) -> int:
    """Bytes of every array (or ShapeDtypeStruct) leaf of `tree`."""
    return sum(leaf_bytes(x) for x in jax.tree.leaves(tree))


def sizing_fields(shape: tuple, cfg: Any) -> list[str]:
    """Static int fields of `cfg` whose value is one of the dimensions of `shape`."""
    dims = set(int(d) for d in shape)
    out = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name, None)
        if not f.metadata.get("pytree_node", True) and type(value) is int and value > 1 and value in dims:
            out.append(f.name)
    return out


def check_state_fits(abstract_state: Any, template_cfg: Any, size: int, devices: list, copies: int = 2) -> int:
    """Refuse (MemoryEstimateError) a population state that cannot fit `copies` times
    (one live state and one being restored or saved). Returns the state's bytes."""
    state = tree_bytes(abstract_state)
    avail, where = available_bytes(devices)
    need = copies * state
    if avail is None or need <= avail:
        return state
    largest = max(jax.tree.leaves(abstract_state), key=leaf_bytes)
    fields = sizing_fields(largest.shape[1:], template_cfg)
    lower = ", ".join(fields) if fields else "the config's sizes"
    raise MemoryEstimateError(
        f"the run needs about {fmt_bytes(need)} ({copies} x its state of {fmt_bytes(state)} for {size} member(s); "
        f"largest array {list(largest.shape)} {largest.dtype}"
        f"{', sized by ' + ', '.join(fields) if fields else ''}) but {fmt_bytes(avail)} of {where} is available: "
        f"lower {lower} or the number of members (--seeds, the grid)."
    )


def check_program_fits(compiled: Any, state_bytes: int, devices: list) -> None:
    """After compiling a chunk: its temporaries on top of the state must fit too."""
    try:
        analysis = compiled.memory_analysis()
        temp = int(getattr(analysis, "temp_size_in_bytes", 0) or 0)
    except Exception:  # not every backend reports it
        return
    avail, where = available_bytes(devices)
    temp *= len(devices)  # reported per device of the SPMD program
    if avail is None or temp + 2 * state_bytes <= avail:
        return
    raise MemoryEstimateError(
        f"the compiled chunk needs about {fmt_bytes(temp)} of temporaries on top of the state's "
        f"{fmt_bytes(2 * state_bytes)}, but {fmt_bytes(avail)} of {where} is available: lower num_envs or the "
        "minibatch sizes, or run fewer members at a time (--map-batch-size, or fewer seeds)."
    )
