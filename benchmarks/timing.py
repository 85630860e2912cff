"""Timing shared by the benchmark scripts."""

from __future__ import annotations

import time
from typing import Any

import jax


def compile_and_run(jitted: Any, *args: Any) -> tuple[float, float, Any]:
    """Compile the jitted function for `args`, then run it once to completion: `(compile
    seconds, run seconds, output)`."""
    t = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return compile_s, time.perf_counter() - t, out
