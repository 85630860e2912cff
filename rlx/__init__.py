"""rlx: pure-functional reinforcement learning in JAX."""

import os as _os


def _xla_cpu_flags() -> None:
    """Turn on XLA:CPU's region analysis in copy insertion, unless the user set it, or
    `RLX_XLA_CPU_FLAGS=0`.

    Without it, XLA copies a whole replay buffer every update when a read of the buffer
    (a minibatch gather) and its in-place write land in the same loop body, so an update
    costs time in proportion to the capacity (docs/tuning-notes.md). It only takes effect if no jax backend has started yet (import
    rlx before running jax code), and it changes nothing on GPU or TPU. The flag exists
    in jaxlib 0.9.2 to 0.11.2; an unknown flag would abort XLA, so newer jaxlibs are left
    alone."""
    if _os.environ.get("RLX_XLA_CPU_FLAGS", "1") == "0":
        return
    flags = _os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_copy_insertion_use_region_analysis" in flags:
        return
    try:
        from importlib.metadata import version

        major, minor = (int(x) for x in version("jaxlib").split(".")[:2])
    except Exception:  # jaxlib missing or an odd version string: leave XLA alone
        return
    if (0, 9) <= (major, minor) < (0, 12):
        _os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_copy_insertion_use_region_analysis=true".strip()


_xla_cpu_flags()


def usable_cpu_cores() -> int:
    """The cores this process may run on: its CPU affinity (`taskset`, a cgroup cpuset),
    not `os.cpu_count()`, which counts the whole machine."""
    try:
        return len(_os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows: no affinity API
        return _os.cpu_count() or 1


def use_every_cpu_core(count: int | None = None) -> None:
    """Expose one XLA CPU device per usable core (or `count` devices) so that a population
    sharded over `jax.devices()` runs on every core, and turn off CPU async dispatch
    (jax >= 0.10 can hang on CPU populations with it, jax-ml/jax#25861).

    Call it before jax runs anything (XLA reads the flags when its CPU backend starts);
    a device count already in `XLA_FLAGS` is kept. Nothing changes on GPU or TPU."""
    flags = _os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        count = count or usable_cpu_cores()
        _os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
    _os.environ.setdefault("JAX_CPU_ENABLE_ASYNC_DISPATCH", "false")


def use_compile_cache(path: str | None = None) -> str:
    """Keep compiled XLA programs on disk, so that rerunning the same program (same
    config, shapes and jax version) skips most of the compile (README, "Command line").

    `path` defaults to `$RLX_COMPILE_CACHE`, else `~/.cache/rlx/xla`; returns it. Call it
    before compiling anything. Off by default: on CPU, jaxlib 0.9-0.10 logs an E-level
    "machine feature +prefer-no-scatter" line for every cached program it loads
    (openxla/xla#44565), although the program runs and gives the same results."""
    import jax

    path = path or _os.environ.get("RLX_COMPILE_CACHE") or _os.path.join(_os.path.expanduser("~"), ".cache", "rlx", "xla")
    _os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    # Only programs that took a while to compile: the many tiny eager ops are not worth a file each.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


def __getattr__(name: str):
    # `rlx.load` imports jax and the agents only when first used, so `import rlx` stays cheap.
    if name == "load":
        from rlx.runs import load

        return load
    raise AttributeError(f"module 'rlx' has no attribute {name!r}")
