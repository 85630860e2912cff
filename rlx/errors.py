"""The failures a user can act on. Each message is one line naming the field or file and
what to do; the command line prints it without a traceback (`--debug` shows one)."""

from __future__ import annotations


class RunError(Exception):
    """An expected failure of a run: bad input, a run file, a lock, a fault."""


class RunFileError(RunError):
    """A run file is missing, corrupt or belongs to another run."""


class RunLockedError(RunError):
    """Another live process holds the run directory."""


class ResumeMismatchError(RunError):
    """`resume` was asked with a config that differs from the stored one."""


class NonFiniteLossError(RunError, FloatingPointError):
    """A loss became NaN or infinite; the last good checkpoint is left intact."""


class MemoryEstimateError(RunError, MemoryError):
    """The run would need more memory than the machine has."""


class Interrupted(RunError):
    """Ctrl-C stopped the run at a chunk boundary; everything up to `updates` is saved."""

    def __init__(self, message: str, updates: int):
        super().__init__(message)
        self.updates = updates


class EnvCheckError(RunError, ValueError):
    """An environment breaks rlx's env interface (`rlx.envs.check.check_env`)."""
