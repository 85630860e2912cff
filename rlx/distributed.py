"""Multi-process (multi-host) runs on `jax.distributed`.

    from rlx import distributed
    distributed.initialize()            # before any other jax call; a no-op on one process
    result = Runner(agent, pop, env_params, out_dir).run()   # unchanged

After `initialize()`, `jax.devices()` lists every device of every process, the
population's mesh spans all of them, and each process holds only the members that
live on its own devices. Where the settings come from, first match wins:

1. arguments (the CLI's `--coordinator`, `--num-processes`, `--process-id`);
2. the environment: `RLX_COORDINATOR` (host:port of process 0), `RLX_NUM_PROCESSES`,
   `RLX_PROCESS_ID`;
3. a detected cluster: a SLURM step with more than one task (`srun`), Open MPI
   (`mpirun`), or a Cloud TPU VM (where jax reads the pod's metadata). jax's own
   cluster detection fills in the addresses;
4. otherwise one process, and nothing is initialised.

Within a population every member has its own key (from its seed), so a member's
result does not depend on which process runs it; `process_key` gives the
per-process streams for work that is local to a process. Only process 0 writes
metrics, figures and JSON records (`is_main()`); orbax checkpoints are written by
every process together (each its own shards, process 0 the metadata), so the
checkpoint directory must be on storage that every host sees.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import Any, NamedTuple

ENV_COORDINATOR = "RLX_COORDINATOR"
ENV_NUM_PROCESSES = "RLX_NUM_PROCESSES"
ENV_PROCESS_ID = "RLX_PROCESS_ID"
ENV_TIMEOUT = "RLX_INIT_TIMEOUT"
DEFAULT_TIMEOUT_S = 120.0


class Setup(NamedTuple):
    """How this process joined the run."""

    source: str  # "single", "arguments", "environment", "slurm", "mpi" or "tpu"
    process_index: int
    process_count: int
    local_devices: int
    global_devices: int


class DistributedSetupError(RuntimeError):
    """The processes could not form one run (bad settings or an unreachable coordinator)."""


def detect_cluster(environ: dict | None = None) -> str | None:
    """The multi-process launcher this process runs under, or None.

    Only launches with more than one process count: a one-task SLURM job or a
    single `python` on a login node runs as a single process.
    """
    env = os.environ if environ is None else environ
    slurm_vars = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    if all(v in env for v in slurm_vars) and _int_or(env["SLURM_NTASKS"], 1) > 1:
        return "slurm"
    if _int_or(env.get("OMPI_COMM_WORLD_SIZE", "1"), 1) > 1:
        return "mpi"
    if any(k in env for k in ("TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES", "MEGASCALE_COORDINATOR_ADDRESS")):
        hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
        if "," in hosts or "MEGASCALE_COORDINATOR_ADDRESS" in env:
            return "tpu"
    if environ is None and _tpu_vm_processes() > 1:
        return "tpu"
    return None


def _tpu_vm_processes() -> int:
    """Hosts of the Cloud TPU slice(s) this VM belongs to (1 off TPU VMs, and on a
    single-host TPU VM, which needs no setup). Asks jax's own cluster classes, which
    read the TPU metadata; private API, so any failure means "1"."""
    try:
        from jax._src import cloud_tpu_init

        if not cloud_tpu_init.running_in_cloud_tpu_vm:
            return 1
        from jax._src.clusters import cloud_tpu_cluster as tpu

        for cls in (tpu.GkeTpuCluster, tpu.GceTpuCluster):
            if cls.is_env_present():
                return int(cls.get_process_count())
    except Exception:
        return 1
    return 1


def _int_or(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def resolve(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: dict | None = None,
) -> tuple[str, dict]:
    """Decide where the settings come from and check them; nothing is contacted.

    Returns `(source, kwargs for jax.distributed.initialize)`. Raises
    `DistributedSetupError` naming the bad or missing setting.
    """
    env = os.environ if environ is None else environ
    given = dict(coordinator=coordinator, num_processes=num_processes, process_id=process_id)
    names = dict(coordinator=("--coordinator", ENV_COORDINATOR), num_processes=("--num-processes", ENV_NUM_PROCESSES),
                 process_id=("--process-id", ENV_PROCESS_ID))  # fmt: skip
    source = "arguments" if any(v is not None for v in given.values()) else None
    for key, (_, var) in names.items():
        if given[key] is None and env.get(var, "") != "":
            given[key] = env[var]
            source = source or "environment"
    if source is None:
        cluster = detect_cluster(environ)
        return (cluster, {}) if cluster else ("single", {})
    missing = [f"{names[k][0]} (or {names[k][1]})" for k, v in given.items() if v is None]
    if missing:
        raise DistributedSetupError(
            f"a multi-process run needs the coordinator address, the number of processes and this process's "
            f"id; missing: {', '.join(missing)}."
        )
    coord = str(given["coordinator"]).strip()
    host, _, port = coord.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedSetupError(
            f"coordinator = {coord!r} is invalid: it must look like HOST:PORT (the address of process 0 and a free "
            "port on it), e.g. 10.0.0.1:12345 or 127.0.0.1:12345 for processes on one machine."
        )
    n, i = _int_or(given["num_processes"], -1), _int_or(given["process_id"], -1)
    if n < 1:
        raise DistributedSetupError(f"num_processes = {given['num_processes']!r} is invalid: it must be an integer >= 1.")
    if not 0 <= i < n:
        raise DistributedSetupError(
            f"process_id = {given['process_id']!r} is invalid: it must be an integer in 0..{n - 1} "
            f"(num_processes = {n})."
        )
    return source, dict(coordinator_address=coord, num_processes=n, process_id=i)


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout_s: float | None = None,
    local_device_ids: Any = None,
) -> Setup:
    """Join (or start) a multi-process run; call it before any other jax call.

    A no-op returning a single-process `Setup` when nothing asks for more than one
    process. Calling it again after a successful call returns the current setup.
    Raises `DistributedSetupError` for bad settings, when jax has already started
    its devices, or when the coordinator cannot be reached within `timeout_s`
    (default `RLX_INIT_TIMEOUT` or 120 s); never hangs.
    """
    import jax

    if _is_initialized():
        return _setup(getattr(initialize, "_source", "arguments"))
    source, kwargs = resolve(coordinator, num_processes, process_id)
    if source == "single":
        return _setup(source)
    timeout = float(timeout_s if timeout_s is not None else os.environ.get(ENV_TIMEOUT, DEFAULT_TIMEOUT_S))
    if timeout <= 0:
        raise DistributedSetupError(f"timeout_s = {timeout} is invalid: it must be > 0 seconds.")
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise DistributedSetupError(
            "rlx.distributed.initialize() must run before jax starts its devices (before any jax.devices(), "
            "array creation or jit call): move it to the top of the program."
        )
    if kwargs:
        _check_reachable(kwargs["coordinator_address"], kwargs["process_id"], timeout)
    if local_device_ids is not None:
        kwargs["local_device_ids"] = local_device_ids
    # jax logs a fatal error and aborts (it does not raise) when the other processes
    # never show up. A watchdog turns that into a message saying what to check.
    where = kwargs.get("coordinator_address", f"the {source} coordinator")
    done = threading.Event()
    threading.Thread(target=_watchdog, args=(done, timeout, where, kwargs), daemon=True).start()
    try:
        jax.distributed.initialize(initialization_timeout=int(timeout) + 30, **kwargs)
    finally:
        done.set()
    initialize._source = source  # type: ignore[attr-defined]
    return _setup(source)


def _is_initialized() -> bool:
    from jax._src import distributed as jd

    return jd.global_state.client is not None


def _setup(source: str) -> Setup:
    import jax

    return Setup(source, jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())


def _check_reachable(address: str, process_id: int, timeout: float) -> None:
    """Fail fast, with a readable error, instead of inside jax's C++ client."""
    host, _, port = address.rpartition(":")
    host, port_n = host.strip("[]"), int(port)
    if process_id == 0:
        # Process 0 serves the coordinator on every interface at this port.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("", port_n))
            except OSError as e:
                raise DistributedSetupError(
                    f"process 0 cannot serve the coordinator on port {port_n} ({e.strerror}): choose a free port "
                    f"in --coordinator / {ENV_COORDINATOR}."
                ) from None
        return
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port_n), timeout=min(2.0, timeout)):
                return
        except OSError as e:  # refused (not up yet), unresolvable, unreachable
            last = e
            time.sleep(0.25)
    raise DistributedSetupError(
        f"could not reach the coordinator at {address} within {timeout:g} s ({last}). Check that process 0 "
        f"is running with the same --coordinator, that the host and port are right and reachable from here, "
        f"or raise the timeout ({ENV_TIMEOUT})."
    )


def _watchdog(done: threading.Event, timeout: float, where: str, kwargs: dict) -> None:
    if done.wait(timeout):
        return
    n = kwargs.get("num_processes", "all")
    sys.stderr.write(
        f"rlx.distributed: the run did not assemble within {timeout:g} s: not all {n} processes joined the "
        f"coordinator at {where}. Start every process with the same coordinator and number of processes and a "
        f"distinct process id, or raise the timeout ({ENV_TIMEOUT}).\n"
    )
    sys.stderr.flush()
    os._exit(3)


def process_index() -> int:
    """This process's index among the jax processes (0 on one host)."""
    import jax

    return jax.process_index()


def is_main() -> bool:
    """True on the one process (index 0) that writes files and draws figures."""
    return process_index() == 0


def process_key(key: Any) -> Any:
    """This process's own stream: `fold_in(key, process_index)`."""
    import jax

    return jax.random.fold_in(key, jax.process_index())


# ---------------------------------------------------------------------------------
# Global arrays
# ---------------------------------------------------------------------------------


def local_rows(sharding: Any, global_len: int) -> list[slice]:
    """The slices of the leading axis held by this process's devices, in order."""
    index_map = sharding.addressable_devices_indices_map((global_len,))
    rows = sorted({(s[0].start or 0, global_len if s[0].stop is None else s[0].stop) for s in index_map.values()})
    return [slice(a, b) for a, b in rows]


def put_global(tree: Any, sharding: Any) -> Any:
    """Place every leaf (leading axis P, the same host value on every process) on a
    sharding that may span processes.

    Each process takes only its own rows and `jax.make_array_from_process_local_data`
    assembles the global array; on one process this is `jax.device_put`.
    """
    import jax
    import numpy as np

    if sharding.is_fully_addressable:
        return jax.tree.map(lambda x: jax.device_put(x, sharding), tree)

    def one(x):
        n = x.shape[0]
        rows = local_rows(sharding, n)
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            local = jax.numpy.concatenate([x[r] for r in rows]) if len(rows) > 1 else x[rows[0]]
        else:
            local = np.concatenate([np.asarray(x[r]) for r in rows])
        return jax.make_array_from_process_local_data(sharding, local, (n,) + tuple(x.shape[1:]))

    return jax.tree.map(one, tree)


def to_host(tree: Any) -> Any:
    """Numpy copies of every leaf on every process (an all-gather when a leaf spans
    processes; every process must call it). Typed keys come back as key data."""
    import jax
    import numpy as np

    def one(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))

    return jax.tree.map(one, tree)


def barrier(name: str) -> None:
    """Wait until every process reaches this point (a no-op on one process)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def gather_flags(flags: list[int]) -> "np.ndarray":
    """Every process's small int flags, `[processes, len(flags)]`, on every process (one
    row without a multi-process run). Every process must call it."""
    import jax
    import numpy as np

    local = np.asarray(flags, np.int32)
    if jax.process_count() == 1:
        return local[None]
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(local))

