"""How the groups of a static sweep run: each group is one `rlx sweep` command, a process
with its own compiled program.

`LAUNCHERS[name](commands, out, kwargs)` runs every command and returns one exit code per
command, in order. A group that fails (a nonzero exit, or a job or task that raised) gets
a nonzero code and never costs the others their results. Bad launcher input raises
`LauncherError` before any group starts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable


class LauncherError(ValueError):
    """Bad launcher input: a missing package or --launcher-kwargs the launcher rejects."""


def _label(cmd: list[str]) -> str:
    """A command's group, for messages: its --out directory."""
    return cmd[cmd.index("--out") + 1] if "--out" in cmd[:-1] else " ".join(cmd)


def _reason(e: BaseException) -> str:
    """One line on why a job or task failed."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    # A failed submitit job's or Ray task's text is a traceback (and log paths) around the
    # group's stderr: the group's own `error: ...` line says most, else the exception line.
    ours = [line[line.find("error: "):] for line in lines if "error: " in line]
    raised = [line for line in lines if re.match(r"[\w.]*(Error|Exception)\b", line)]
    return (ours or raised or lines or [e.__class__.__name__])[-1]


def _run_command(cmd: list[str], cwd: str | None = None) -> int:
    return subprocess.run(cmd, cwd=cwd).returncode


def launch_local(commands: list[list[str]], out: str, kwargs: dict) -> list[int]:
    """One group after another on this machine (each a fresh process: one compile each)."""
    if kwargs:
        raise LauncherError(f"the local launcher takes no --launcher-kwargs (got {', '.join(kwargs)}).")
    codes = []
    for cmd in commands:
        try:
            codes.append(_run_command(cmd))
        except OSError as e:  # a group that cannot start must not stop the others
            print(f"rlx: {_label(cmd)} did not start: {e}", file=sys.stderr)
            codes.append(1)
    return codes


def launch_slurm(commands: list[list[str]], out: str, kwargs: dict) -> list[int]:
    """Every group as a job through submitit; waits for all of them. `cluster=local` (or
    `debug`) runs the jobs on this machine through the same path."""
    try:
        import submitit
    except ImportError:
        raise LauncherError("--launcher slurm needs submitit: pip install submitit") from None
    params = dict(kwargs)
    cluster = params.pop("cluster", None)
    folder = os.path.join(out, "submitit")
    try:
        # Without `cluster`, submitit picks SLURM where it finds it.
        executor = submitit.AutoExecutor(folder=folder, **({"cluster": str(cluster)} if cluster else {}))
        executor.update_parameters(**params)
    except (ValueError, TypeError, NameError, AssertionError) as e:
        # submitit checks parameter types with assert and names unknown ones in a NameError.
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise LauncherError(f"--launcher slurm: submitit rejects --launcher-kwargs: {first}") from None
    jobs = []
    for cmd in commands:
        try:
            jobs.append(executor.submit(submitit.helpers.CommandFunction(cmd, cwd=os.getcwd())))
        except Exception as e:  # a refused submission must not lose the jobs already queued
            print(f"rlx: could not submit {_label(cmd)}: {_reason(e)}", file=sys.stderr)
            jobs.append(None)
    print("rlx: submitted jobs " + ", ".join(str(j.job_id) for j in jobs if j is not None))
    codes = []
    for cmd, job in zip(commands, jobs):
        if job is None:
            codes.append(1)
            continue
        try:
            job.result()
            codes.append(0)
        except Exception as e:  # a failed group must not lose the others' results
            print(f"rlx: job {job.job_id} ({_label(cmd)}) failed: {_reason(e)} (logs in {folder})", file=sys.stderr)
            codes.append(1)
    return codes


def launch_ray(commands: list[list[str]], out: str, kwargs: dict) -> list[int]:
    """Every group as a Ray task with `kwargs` as its options, on the cluster at
    RAY_ADDRESS, or else on a local cluster started (and stopped) here."""
    try:
        import ray
    except ImportError:
        raise LauncherError("--launcher ray needs ray: pip install ray") from None
    try:  # Ray checks task options here, before any cluster is touched
        task = ray.remote(_run_command).options(**kwargs)
    except (ValueError, TypeError) as e:
        raise LauncherError(f"--launcher ray: bad --launcher-kwargs: {e}") from None
    started = not ray.is_initialized()
    if started:
        address = os.environ.get("RAY_ADDRESS", "").strip()
        try:
            if address:
                ray.init(address=address)
            else:
                import rlx

                # "local" never joins another cluster found on this machine by accident; the
                # CPU count is this process's cores, not the whole machine's.
                ray.init(address="local", num_cpus=rlx.usable_cpu_cores(), include_dashboard=False)
        except ConnectionError as e:
            raise ConnectionError(f"--launcher ray: no Ray cluster at RAY_ADDRESS={address}: {_reason(e)}") from None
    try:
        refs = [task.remote(cmd, os.getcwd()) for cmd in commands]
        codes = []
        for cmd, ref in zip(commands, refs):
            try:
                codes.append(int(ray.get(ref)))
            except Exception as e:  # a failed task must not lose the others' results
                print(f"rlx: ray task for {_label(cmd)} failed: {_reason(e)}", file=sys.stderr)
                codes.append(1)
        return codes
    finally:
        if started:  # disconnects from RAY_ADDRESS; stops a cluster started here
            ray.shutdown()


LAUNCHERS: dict[str, Callable[[list[list[str]], str, dict], list[int]]] = {
    "local": launch_local,
    "slurm": launch_slurm,
    "ray": launch_ray,
}
