"""Named fault-injection points for testing the host loop: nothing happens unless
`RLX_FAULT` names the point.

    RLX_FAULT="csv.append.torn"        kill the process (SIGKILL) the first time the point is hit
    RLX_FAULT="checkpoint.saved@3"     ... the third time
    RLX_FAULT="chunk.done@2:wait"      write $RLX_FAULT_FILE.waiting and wait until $RLX_FAULT_FILE exists
    RLX_FAULT="csv.append:disk_full"   raise OSError(ENOSPC) there

The points are listed in `POINTS`; tests/test_faults.py drives each one.
"""

from __future__ import annotations

import errno
import os
import signal
import time

POINTS = (
    "runner.locked",  # the lock is taken, nothing else written
    "chunk.done",  # a chunk has run; nothing of it written yet
    "csv.append.torn",  # half of a chunk's rows written
    "csv.appended",  # the chunk's rows are in metrics.csv, its checkpoint not yet saved
    "checkpoint.committed",  # orbax committed the step; its checksum manifest not yet written
    "checkpoint.verified",  # the manifest is written; older checkpoints not yet cleaned up
    "checkpoint.cleaned",  # older checkpoints removed
    "resume.restored",  # state restored from a checkpoint; metrics.csv not yet cut back
    "csv.truncate.written",  # the cut-back copy of metrics.csv is written, not yet in place
    "atomic.written",  # any atomically written file: the temp file is complete, not yet renamed
    "run.finished",  # the run loop ended; summary not yet written
)

_hits: dict[str, int] = {}


def point(name: str) -> None:
    """Act on `RLX_FAULT` if it names this point (and this hit count)."""
    spec = os.environ.get("RLX_FAULT")
    if not spec:
        return
    target, _, action = spec.partition(":")
    where, _, nth = target.partition("@")
    if where != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] != int(nth or 1):
        return
    if action == "wait":
        release = os.environ["RLX_FAULT_FILE"]
        with open(release + ".waiting", "w") as f:
            f.write(str(os.getpid()))
        while not os.path.exists(release):
            time.sleep(0.05)
    elif action == "disk_full":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
    else:
        os.kill(os.getpid(), signal.SIGKILL)
