"""The one host loop: runs a program in jitted chunks and does all host I/O between them.

Every long run in rlx (a population's training, an ES meta-training, C-MORL's rounds, a
GROOVE curriculum) is a *program*: a state pytree advanced `total` steps, `chunk` at a
time. `HostLoop(program, out_dir).run(resume)` gives each of them the same guarantees:

- the run directory's lock; a fresh run never overwrites another; a resume must have
  the stored spec (`config.json`); every check runs before anything is written;
- `metrics.csv` appended a chunk at a time (fsynced, torn rows repaired on resume);
- a verified orbax checkpoint after every `checkpoint_every` chunks; a resume continues
  from the newest one that verifies and repeats the uninterrupted run bit for bit;
- a stop on a non-finite loss, with the last good checkpoint intact;
- Ctrl-C stops at the next chunk boundary with everything saved;
- progress: a bar on a terminal, a plain line every `PLAIN_PROGRESS_S` seconds otherwise.

A program has (duck-typed; `rlx.train.Runner` is the reference):

    total: int                 steps in the whole run
    chunk: int                 steps per chunk
    members: list[dict]        one CSV row per member and step, labelled by these values
    step_name: str             what a step is called ("update", "generation", "round"); the
                               CSV's step column ("update_index" for "update")
    spec() -> dict             stored in config.json, compared on resume
    check() -> None            every process's own checks (memory), before anything is written
    start(timings) -> state    the state at step 0 (also the template checkpoints restore into)
    advance(state, done, k, timings) -> (state, {name: [P, k]} host arrays)
    write_files(out_dir, state, done)   optional: extra run files, written atomically
    restore_check(state, meta, step)    optional: a test of a restored state (None passes)
    progress_keys: tuple[str]  optional: metrics the progress line shows

`advance` may raise `NonFiniteLossError` itself; the loop adds what was kept.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

import numpy as np

from rlx.errors import Interrupted, NonFiniteLossError

# Progress off a terminal (a SLURM log): a plain line per chunk, but at most one this
# often, so thousands of fast chunks (ES generations) do not flood the log.
PLAIN_PROGRESS_S = 10.0

# Entries of a run spec that may change on resume: placement, not results ("map" members
# are bitwise equal on any device count).
RESUME_FREE = ("devices",)


def loss_names(metrics: dict[str, Any]) -> list[str]:
    """The metric names that are losses (those containing "loss"), in order."""
    return [k for k in metrics if "loss" in k]


def spec_differences(stored: dict, new: dict, prefix: str = "") -> list[str]:
    """Names of the entries (nested with '.') whose values differ between two specs."""
    out = []
    for key in sorted(set(stored) | set(new)):
        a, b = stored.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += spec_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def jsonable(x: Any) -> Any:
    """`x` as it reads back from JSON, so stored and new specs compare equal."""
    import json

    from rlx.logging import _json_default

    return json.loads(json.dumps(x, default=_json_default))


class HostLoop:
    """Drives one program; see the module docstring for what it guarantees."""

    def __init__(
        self,
        program: Any,
        out_dir: str | None = None,
        *,
        progress: bool = True,
        checkpoint_every: int = 1,
        description: str = "train",
        on_chunk: Callable[[int, dict], None] | None = None,
        trackers: Any = None,
        nan_advice: str = "Lower lr or check the reward scale.",
    ):
        if trackers is not None and not out_dir:
            raise ValueError("trackers need an out_dir: they write beside the run's metrics.csv.")
        self.program = program
        self.out_dir = out_dir
        self.progress = progress
        self.checkpoint_every = checkpoint_every
        self.description = description
        self.on_chunk = on_chunk  # on_chunk(steps_done, metrics) after each saved chunk
        # An rlx.tracking.Trackers: opened once every check has passed, called like on_chunk
        # on process 0; closing it is its owner's job.
        self.trackers = trackers
        self.nan_advice = nan_advice
        self.last_checkpoint: int | None = None
        self._stop_requested = False

    @property
    def step_name(self) -> str:
        return getattr(self.program, "step_name", "update")

    # -- before anything is written ----------------------------------------------------------
    def _prepare(self, resume: bool):
        """Every check before the run directory changes or anything compiles. Returns the
        held lock (or None without an out_dir or off process 0) and whether this is a resume.

        Process 0 alone reads and writes the run directory; every process runs the
        program's own checks; then all processes agree, so one refusal stops them all before
        the first collective (otherwise the others wait on it until the collective times out)."""
        from rlx.distributed import gather_flags, is_main
        from rlx.errors import RunError
        from rlx.runfiles import RunLock

        lock, created, refusal = None, False, None
        try:
            if self.out_dir and is_main():
                created = not os.path.exists(self.out_dir)
                os.makedirs(self.out_dir, exist_ok=True)
                lock = RunLock(self.out_dir).acquire()
                resume = self._check_existing_run(resume)
            self.program.check()
        except Exception as error:  # noqa: BLE001 - re-raised below, after the others hear of it
            refusal = error
        try:
            flags = gather_flags([refusal is not None, resume])
            if refusal is not None:
                raise refusal
            if flags[:, 0].any():
                who = int(np.flatnonzero(flags[:, 0])[0])
                raise RunError(f"process {who} refused the run; its log says why.")
            resume = bool(flags[0, 1])  # process 0 read the run directory
        except BaseException:
            if lock is not None:
                lock.release()
                if created:  # a refused run leaves no trace of itself
                    with contextlib.suppress(OSError):
                        os.unlink(lock.path)
                        os.rmdir(self.out_dir)
            raise
        return lock, resume

    def _check_existing_run(self, resume: bool) -> bool:
        """Refuse a fresh run over an existing one, and a resume with another spec.
        Returns whether there is anything to resume."""
        from rlx.errors import ResumeMismatchError, RunFileError
        from rlx.runfiles import read_json

        config_path = os.path.join(self.out_dir, "config.json")
        ckpt_dir = os.path.join(self.out_dir, "checkpoints")
        held = [n for n in ("metrics.csv", "config.json") if os.path.exists(os.path.join(self.out_dir, n))]
        if os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
            held.append("checkpoints/")
        if not resume:
            if held:
                raise FileExistsError(
                    f"{self.out_dir} already holds a run ({', '.join(held)}); resume it (--resume) "
                    "or choose a new output directory."
                )
            return False
        if not os.path.exists(config_path) and not held:
            return False  # nothing was written yet: a resume is a fresh start
        stored = read_json(config_path, "config.json")
        if not isinstance(stored, dict):
            raise RunFileError(f"{config_path} is corrupt (not a JSON object); start a new run.")
        new = jsonable(self.program.spec())
        for spec in (stored, new):
            for key in RESUME_FREE:
                spec.pop(key, None)
        if "runner" in stored or "runner" not in new:
            diff = spec_differences(stored, new)
        else:  # written before the Runner stored its part: compare what is there
            diff = spec_differences(stored, {k: new.get(k) for k in stored})
        if diff:
            shown = ", ".join(d.replace("runner.population_config.", "config.") for d in diff[:8])
            raise ResumeMismatchError(
                f"{self.out_dir} was started with a different {shown}{' ...' * (len(diff) > 8)}; "
                "resume it as it was started, or start a new run in another directory."
            )
        return True

    # -- the run -------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> tuple[Any, dict[str, np.ndarray], int, dict[str, float]]:
        """`(state, metrics {name: [P, steps run by this call]}, first step of them, timings)`."""
        from rlx import faults
        from rlx.checkpoint import Checkpointer
        from rlx.distributed import is_main
        from rlx.logging import MetricsCSV, append_versions, write_json
        from rlx.runfiles import remove_stale_temp_files

        lock, resume = self._prepare(resume)
        faults.point("runner.locked")
        program, done = self.program, 0
        ckpt = csv = None
        self.last_checkpoint = None
        main = is_main()  # one writer when the run spans processes
        try:
            if self.out_dir and main:
                remove_stale_temp_files(self.out_dir)
                if not resume:
                    write_json(os.path.join(self.out_dir, "config.json"), jsonable(program.spec()))
                if self.trackers is not None:
                    self.trackers.open(self.out_dir, program.members, jsonable(program.spec()))
            t0 = time.perf_counter()
            timings = {"init_s": 0.0, "compile_s": 0.0, "run_s": 0.0}
            state = program.start(timings)
            if self.out_dir:
                ckpt = Checkpointer(os.path.join(self.out_dir, "checkpoints"), writer=main)
                if resume and ckpt.all_steps():
                    state, _, done, passed = ckpt.restore_newest(state, getattr(program, "restore_check", None))
                    self.last_checkpoint = done
                    for step, reason in passed:
                        print(f"rlx: the checkpoint at {self.step_name} {step} is unusable ({reason}); "
                              f"continuing from {self.step_name} {done}", file=sys.stderr)  # fmt: skip
                    faults.point("resume.restored")
                if main:
                    csv = self._metrics_csv(MetricsCSV)
                    csv.repair(done, len(program.members))
                    append_versions(os.path.join(self.out_dir, "versions.json"), done)
            timings["init_s"] = time.perf_counter() - t0 - timings["compile_s"]
            return self._loop(state, done, ckpt, csv, timings)
        finally:
            if ckpt is not None:
                ckpt.close()
            if lock is not None:
                lock.release()

    def _metrics_csv(self, cls):
        from rlx.logging import FIRST_COLUMNS

        # The Runner's updates are the "update_index" column (not "update", which pandas'
        # DataFrame.update would shadow); other programs name the column after their step.
        if self.step_name == "update":
            first, step = FIRST_COLUMNS, "update_index"
        else:
            first, step = ("member", "seed", self.step_name), self.step_name
        member_keys = dict.fromkeys(k for m in self.program.members for k in m)
        return cls(os.path.join(self.out_dir, "metrics.csv"), list(member_keys), first=first, step=step)

    def _loop(self, state, done, ckpt, csv, timings):
        from rlx import faults
        from rlx.distributed import is_main

        program = self.program
        chunks: list[dict[str, np.ndarray]] = []
        first = done
        bar = Progress(self.progress and is_main(), program.total, done, self.description, self.step_name,
                       getattr(program, "progress_keys", ()))  # fmt: skip
        restore_sigint = self._catch_sigint()
        try:
            while done < program.total:
                k = min(program.chunk, program.total - done)
                try:
                    state, metrics = program.advance(state, done, k, timings)
                except NonFiniteLossError as error:
                    raise NonFiniteLossError(f"{error}; stopped, and {self._kept()}.") from None
                faults.point("chunk.done")
                self._check_finite(metrics, done)
                if csv is not None:
                    csv.append(metrics, program.members, done)
                done += k
                chunks.append(metrics)
                # Counted from step 0, not from this call, so a resumed run checkpoints after
                # the same chunks as an uninterrupted one.
                chunk_number = -(-done // program.chunk)
                stopping = self._stop_requested and done < program.total
                if ckpt is not None:
                    if is_main() and hasattr(program, "write_files"):
                        program.write_files(self.out_dir, state, done)
                    if chunk_number % self.checkpoint_every == 0 or done == program.total or stopping:
                        ckpt.save(done, state, {"updates": done})
                        self.last_checkpoint = done
                bar.advance(k, metrics)
                if self.on_chunk is not None:
                    self.on_chunk(done, metrics)
                if self.trackers is not None and is_main():
                    self.trackers(done, metrics)
                if stopping:
                    where = f"; saved in {self.out_dir}, continue with run(resume=True)" if self.out_dir else ""
                    raise Interrupted(f"interrupted at {self.step_name} {done} of {program.total}{where}", done)
        finally:
            restore_sigint()
            bar.close()
        merged = {name: np.concatenate([c[name] for c in chunks], 1) for name in (chunks[0] if chunks else {})}
        return state, merged, first, timings

    def _kept(self) -> str:
        if self.last_checkpoint is not None:
            return f"the checkpoint at {self.step_name} {self.last_checkpoint} is intact"
        return "no checkpoint was written yet" if self.out_dir else "nothing was saved (no out_dir)"

    def _check_finite(self, metrics: dict[str, np.ndarray], first: int) -> None:
        for name in loss_names(metrics):
            bad = ~np.isfinite(metrics[name])
            if bad.any():
                member, j = np.argwhere(bad)[0][:2]
                seed = self.program.members[int(member)].get("seed")
                raise NonFiniteLossError(
                    f"{name} is {metrics[name][member, j]} at {self.step_name} {first + int(j)} "
                    f"(member {int(member)}, seed {seed}); stopped, and {self._kept()}. {self.nan_advice}"
                )

    def _catch_sigint(self) -> Callable[[], None]:
        """The first Ctrl-C asks the loop to stop at the next chunk boundary; the second
        stops at once (KeyboardInterrupt). Returns the function that puts the old handler back."""
        self._stop_requested = False
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            self._stop_requested = True
            print("\nrlx: stopping after this chunk, with everything saved (Ctrl-C again to stop now)", file=sys.stderr)
            signal.signal(signal.SIGINT, signal.default_int_handler)

        signal.signal(signal.SIGINT, handler)
        return lambda: signal.signal(signal.SIGINT, previous)


class Progress:
    """Progress over steps: env steps/s, the latest mean return and any `keys` means.

    On a terminal, a rich bar; elsewhere (a log file) a plain line on stderr per chunk
    (at most one per `PLAIN_PROGRESS_S` seconds, and always the last), because a bar there
    prints nothing until it stops: `train: update 4/20  env steps 8,192  21,004 steps/s
    return 41.5`."""

    def __init__(self, enabled: bool, total: int, done: int, description: str, unit: str = "update",
                 keys: tuple = ()):  # fmt: skip
        self.enabled, self.total, self.done = enabled, total, done
        self.description, self.unit, self.keys = description, unit, tuple(keys)
        self.start = self.last_line = time.perf_counter()
        self.start_steps = None
        self.terminal = enabled and sys.stderr.isatty()
        if not self.terminal:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self.p = Bar(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn(f"{unit}s"), TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
        )  # fmt: skip
        self.p.start()
        self.task = self.p.add_task(description, total=total, completed=done, info="compiling...")

    def info(self, metrics: dict[str, np.ndarray]) -> str:
        parts = []
        if "env_steps" in metrics:
            steps = float(np.sum(metrics["env_steps"][:, -1]))
            if not self.terminal:  # the bar shows the count of steps; a log line must say it
                parts.append(f"env steps {steps:,.0f}")
            if self.start_steps is None:
                self.start_steps = float(np.sum(metrics["env_steps"][:, 0]))
                self.start = time.perf_counter()
            elif time.perf_counter() > self.start:
                parts.append(f"{(steps - self.start_steps) / (time.perf_counter() - self.start):,.0f} steps/s")
        with np.errstate(all="ignore"), warnings_off():
            if "episode_return" in metrics:
                parts.append(f"return {np.nanmean(metrics['episode_return'][:, -1]):.1f}")
            for key in self.keys:
                if key in metrics:
                    parts.append(f"{key} {np.nanmean(metrics[key][:, -1]):.4g}")
        return "  ".join(parts)

    def advance(self, k: int, metrics: dict[str, np.ndarray]) -> None:
        if not self.enabled:
            return
        self.done += k
        info = self.info(metrics)
        if self.terminal:
            self.p.update(self.task, advance=k, info=info)
        elif time.perf_counter() - self.last_line >= PLAIN_PROGRESS_S or self.done >= self.total:
            self.last_line = time.perf_counter()
            print(f"{self.description}: {self.unit} {self.done}/{self.total}  {info}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.terminal:
            self.p.stop()


@contextlib.contextmanager
def warnings_off():
    """nanmean of an all-NaN column warns; the progress line shows nan instead."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
