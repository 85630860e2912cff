"""Run files that survive a kill at any moment: atomic writes and the run lock.

Every file of a run directory is written to a temporary file beside it, flushed,
fsynced and renamed over the old one (`os.replace` is atomic on POSIX), so a reader
sees the old file or the new one, never a torn mix. The run lock is an `fcntl` lock on
`DIR/.lock`: the kernel drops it when its process dies, so a lock left by a killed run
never blocks the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import tempfile
from typing import Any, Callable, Iterator

from rlx import faults
from rlx.errors import RunFileError, RunLockedError

TEMP_PREFIX = ".rlx-tmp-"


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _temp_beside(path: str) -> Iterator[str]:
    """A temp path in `path`'s folder; on success it is fsynced and renamed to `path`, on
    failure removed."""
    directory = os.path.dirname(os.path.abspath(path))
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + base + ".", suffix=ext, dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        faults.point("atomic.written")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """`with atomic_open(path) as f: ...` writes `path` all at once, or not at all."""
    with _temp_beside(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def atomic_write(path: str, data: str | bytes) -> None:
    """Write `data` to `path` atomically (temp file, fsync, rename; see `atomic_open`)."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def atomic_save(path: str, save: Callable[[str], None]) -> None:
    """Atomically write a file produced by a library that wants a path (`savefig`)."""
    with _temp_beside(path) as tmp:
        save(tmp)


def remove_stale_temp_files(directory: str) -> None:
    """Temporary files left by a process killed mid-write (only safe under the run lock)."""
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(directory):
            if name.startswith(TEMP_PREFIX):
                path = os.path.join(directory, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(path)


def read_json(path: str, what: str = "run file") -> Any:
    """A JSON run file, or one line naming the file when it is missing or corrupt."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise RunFileError(f"{path} is missing: this directory holds no complete rlx run ({what}).") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFileError(f"{path} is corrupt ({e.__class__.__name__}: {e}); restore it from a copy or start a new run.") from None


class RunLock:
    """An exclusive lock on a run directory for the life of one process.

    A second process gets a RunLockedError naming the PID and host of the holder."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, ".lock")
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").split()
            os.close(fd)
            pid, host = (holder + ["?", "?"])[:2]
            raise RunLockedError(
                f"{os.path.dirname(self.path)} is in use by PID {pid} on {host}: wait for that run to finish "
                "(or stop it), then resume; to run alongside it, choose another --out."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            # Clear the holder before unlocking: the file stays (removing it would race with a new holder).
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
