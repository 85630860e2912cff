"""The fully-jitted training function, built once for every agent.

    train = make_train(agent, cfg)
    state, metrics = jax.jit(train)(key, cfg, env_params)       # one run
    states, metrics = jax.jit(jax.vmap(train))(keys, cfgs, env_params_batch)  # a population

`train` is `init` followed by `lax.scan(update)`; it is pure, vmappable, shardable
and differentiable-through. `metrics` holds one row per update: `{name: [U]}`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax

from rlx.types import Agent


def make_train(agent: Agent, cfg: Any, num_updates: int | None = None) -> Callable:
    """Return `train(key, cfg, env_params) -> (state, metrics)`.

    The number of updates comes from `cfg`'s static fields unless given.
    """
    n = agent.num_updates(cfg) if num_updates is None else int(num_updates)

    def train(key: jax.Array, c: Any, env_params: Any):
        state = agent.init(key, c, env_params)
        return run_updates(agent, state, c, env_params, n)

    return train


def run_updates(agent: Agent, state: Any, cfg: Any, env_params: Any, n: int):
    """`n` updates in one `lax.scan`: `(state, metrics{name: [n]})`."""

    def body(s, _):
        return agent.update(s, cfg, env_params)

    return jax.lax.scan(body, state, None, length=n)


# ---------------------------------------------------------------------------------
# The chunked host driver
# ---------------------------------------------------------------------------------

import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402

from rlx.errors import NonFiniteLossError  # noqa: E402,F401  (part of this module's API)

# Seed of the evaluation keys between chunks: fixed, and apart from any training seed's stream.
EVAL_KEY_SEED = 10_007


POPULATION_MODES = ("auto", "vmap", "map")


def resolve_population_mode(mode: str) -> str:
    """"auto" is "map" on CPU (bitwise reproducible and, measured on 2 cores, faster:
    212k vs 151k env-steps/s for 8 CartPole PPO seeds) and "vmap" on accelerators,
    where batching members is what fills the device."""
    if mode == "auto":
        return "map" if jax.default_backend() == "cpu" else "vmap"
    return mode


def over_population(fn: Callable, mesh: Any, mode: str = "vmap", batch_size: int | None = None) -> Callable:
    """Lift `fn(state, cfg, env_params)` to a population (leading axis on state and cfg).

    "vmap" batches the members of each device into one program (fastest). "map"
    runs them one after another with `lax.map` inside each device's shard
    (`shard_map`): each member then runs exactly the program of a solo run, so
    results are bitwise identical for any population size and device count. With
    "vmap", XLA may rewrite some reductions differently for different per-device
    batch sizes, so results agree bitwise only when members per device are equal.
    `batch_size` (with "map") vmaps that many members at a time, one batch after
    another: memory for temporaries grows with the members in flight, not with P.
    """
    batched = jax.vmap(fn, (0, 0, None))
    if mode == "vmap":
        return batched

    from jax.sharding import PartitionSpec

    def local(state, cfg, env_params):
        return jax.lax.map(lambda sc: fn(sc[0], sc[1], env_params), (state, cfg), batch_size=batch_size)

    spec = PartitionSpec("pop")
    return jax.shard_map(
        local, mesh=mesh, in_specs=(spec, spec, PartitionSpec()), out_specs=spec, check_vma=False
    )


@dataclass
class RunResult:
    state: Any  # population state, leaves [P, ...]
    metrics: dict[str, np.ndarray]  # {name: [P, U']} for the updates run by this call
    first_update: int  # update index of metrics[:, 0]
    timings: dict[str, float] = field(default_factory=dict)


def loss_names(metrics: dict[str, Any]) -> list[str]:
    return [k for k in metrics if "loss" in k]


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"Runner {name} = {value!r} is invalid: it must be an integer >= {minimum}.")
    return int(value)


def _jsonable(x: Any) -> Any:
    """`x` as it reads back from JSON, so stored and new specs compare equal."""
    import json

    from rlx.logging import _json_default

    return json.loads(json.dumps(x, default=_json_default))


# Entries of a run spec that may change on resume: placement, not results ("map" members
# are bitwise equal on any device count).
RESUME_FREE = ("devices",)


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


class Runner:
    """Runs a population in jitted chunks of updates; does all host I/O between chunks.

    Between chunks it appends to `metrics.csv`, saves a verified orbax checkpoint of the
    full state, shows progress and stops on a non-finite loss. Results are bitwise equal
    to `jit(vmap(train))` on CPU for the same keys. A run killed at any point loses at
    most the chunk in flight; `run(resume=True)` continues from the newest checkpoint that
    verifies. Before anything in the run directory changes, the Runner takes its lock,
    refuses to overwrite another run, checks that a resumed run has the stored config
    (`config.json`) and that the state fits in memory. Ctrl-C stops at the next chunk
    boundary with everything saved (`rlx.errors.Interrupted`).

    `run_spec` holds what the caller wants stored in `config.json` and checked on resume
    (the CLI stores the algorithm, env and flags); the Runner adds its own part.
    """

    def __init__(
        self,
        agent: Agent,
        population: Any,  # rlx.population.Population
        env_params: Any,
        out_dir: str | None = None,
        *,
        num_updates: int | None = None,
        chunk_updates: int | None = None,
        devices: int | None = None,
        progress: bool = True,
        checkpoint_every: int = 1,
        description: str = "train",
        population_mode: str = "auto",
        on_chunk: Callable[[int, dict], None] | None = None,
        eval_env: Any = None,
        eval_episodes: int = 16,
        eval_every: int = 0,
        map_batch_size: int | None = None,
        run_spec: dict | None = None,
    ):
        from rlx import population as pop_lib

        self.agent = agent
        self.pop = population
        self.env_params = env_params
        self.out_dir = out_dir
        size = len(population.members)
        self.template = jax.tree.map(lambda x: x[0], population.cfg)
        self.num_updates = (
            agent.num_updates(self.template) if num_updates is None else _positive_int("num_updates", num_updates, 0)
        )
        if chunk_updates is None:
            chunk_updates = max(1, -(-self.num_updates // 20))
        self.chunk_updates = _positive_int("chunk_updates", chunk_updates)
        self.devices = pop_lib.default_devices(size) if devices is None else _positive_int("devices", devices)
        pop_lib.check_devices(size, self.devices)
        self.mesh = pop_lib.make_mesh(self.devices)
        self.sharding = pop_lib.pop_sharding(self.mesh)
        self.progress = progress
        self.checkpoint_every = _positive_int("checkpoint_every", checkpoint_every)
        self.description = description
        if population_mode not in POPULATION_MODES:
            raise ValueError(
                f"population_mode = {population_mode!r} is invalid: accepted values are {', '.join(POPULATION_MODES)}."
            )
        if map_batch_size is not None and (_positive_int("map_batch_size", map_batch_size) < 1 or population_mode == "vmap"):
            raise ValueError(f"map_batch_size = {map_batch_size} is invalid: it must be >= 1, with population_mode map or auto.")
        self.map_batch_size = map_batch_size
        self.population_mode = "map" if map_batch_size else resolve_population_mode(population_mode)
        self.on_chunk = on_chunk  # called as on_chunk(updates_done, metrics) after each saved chunk
        self.eval_every = _positive_int("eval_every", eval_every, 0)
        self.eval_episodes = _positive_int("eval_episodes", eval_episodes)
        if eval_every and eval_env is None:
            raise ValueError("Runner eval_every needs eval_env: the (unwrapped) env to evaluate the policy on.")
        self.eval_env = eval_env
        self.run_spec = dict(run_spec or {})
        self._compiled: dict[int, Any] = {}
        self._stop_requested = False

    # -- compiled pieces -------------------------------------------------------------
    def _init_over_population(self):
        return over_population(self.agent.init, self.mesh, self.population_mode, self.map_batch_size)

    def _init_fn(self):
        return jax.jit(self._init_over_population(), out_shardings=self.sharding)

    def _chunk_fn(self, k: int):
        """k updates for every member, jitted, donating the incoming state."""
        agent = self.agent

        def chunk(state, cfg, env_params):
            return run_updates(agent, state, cfg, env_params, k)

        return jax.jit(
            over_population(chunk, self.mesh, self.population_mode, self.map_batch_size),
            donate_argnums=0,
            out_shardings=self.sharding,
        )

    def _eval_fn(self):
        """Mean deterministic return per member, `[P]` (or `[P, d]`), for a population state."""
        from rlx.evaluation import evaluate

        agent, env, n = self.agent, self.eval_env, self.eval_episodes

        def one(state, cfg, env_params, key):
            params = agent.policy_params(state)
            return evaluate(agent, params, cfg, env, env_params, key, n)["return"].mean(0)

        return jax.jit(jax.vmap(one, (0, 0, None, None)))

    def _maybe_evaluate(self, state, cfg, done: int, k: int, chunk_index: int) -> np.ndarray:
        """`[P, k]` (or `[P, k, d]`): NaN except the chunk's last update on evaluation chunks.
        The column exists on every chunk so the CSV header is fixed from the first one."""
        if not hasattr(self, "_evaluate"):
            self._evaluate = self._eval_fn()
            d = getattr(self.eval_env, "reward_dim", None)
            self._eval_shape = (d,) if d else ()
        size = len(self.pop.members)
        col = np.full((size, k) + self._eval_shape, np.nan, np.float32)
        if chunk_index % self.eval_every == 0 or done + k == self.num_updates:
            key = jax.random.fold_in(jax.random.key(EVAL_KEY_SEED), done + k)
            from rlx.distributed import to_host

            col[:, -1] = to_host(self._evaluate(state, cfg, self.env_params, key))
        return col

    # -- run files -----------------------------------------------------------------------
    def spec(self) -> dict:
        """What `config.json` holds: the caller's `run_spec` and the Runner's own part."""
        from rlx import config as config_lib

        runner = dict(
            population_config=config_lib.to_dict(self.pop.cfg), members=self.pop.members,
            num_updates=self.num_updates, chunk_updates=self.chunk_updates, population_mode=self.population_mode,
            map_batch_size=self.map_batch_size, eval_every=self.eval_every,
            eval_episodes=self.eval_episodes if self.eval_every else None,
        )  # fmt: skip
        return _jsonable({**self.run_spec, "runner": runner})

    def _prepare(self, resume: bool):
        """Every check before the run directory changes or anything compiles. Returns the
        held lock (or None without an out_dir or off process 0) and whether this is a resume.

        Process 0 alone reads and writes the run directory; every process checks its own
        memory; then all processes agree, so one refusal stops them all before the first
        collective (otherwise the others wait on it until the collective times out)."""
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
            self._check_memory()
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
                    import contextlib

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
        new = self.spec()
        for spec in (stored, new):
            for key in RESUME_FREE:
                spec.pop(key, None)
        if "runner" in stored:
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

    def _check_memory(self) -> None:
        from rlx import memory

        abstract = jax.eval_shape(self._init_over_population(), self.pop.keys, self.pop.cfg, self.env_params)
        self._state_bytes = memory.check_state_fits(
            abstract, self.template, len(self.pop.members), list(self.mesh.devices.flat)
        )

    # -- the loop ----------------------------------------------------------------------
    def run(self, resume: bool = False) -> RunResult:
        from rlx import faults
        from rlx import population as pop_lib
        from rlx.checkpoint import Checkpointer, update_count_check
        from rlx.distributed import is_main
        from rlx.logging import MetricsCSV, append_versions, write_json
        from rlx.runfiles import remove_stale_temp_files

        lock, resume = self._prepare(resume)
        faults.point("runner.locked")
        done = 0
        ckpt = csv = None
        self.last_checkpoint: int | None = None
        main = is_main()  # one writer when the run spans processes
        try:
            if self.out_dir and main:
                remove_stale_temp_files(self.out_dir)
                if not resume:
                    write_json(os.path.join(self.out_dir, "config.json"), self.spec())
            keys = pop_lib.shard(self.pop.keys, self.mesh)
            cfg = pop_lib.shard(self.pop.cfg, self.mesh)
            t0 = time.perf_counter()
            state = self._init_fn()(keys, cfg, self.env_params)
            if self.out_dir:
                ckpt = Checkpointer(os.path.join(self.out_dir, "checkpoints"), writer=main)
                if resume and ckpt.all_steps():
                    state, meta, done, passed = ckpt.restore_newest(state, update_count_check)
                    self.last_checkpoint = done
                    for step, reason in passed:
                        print(f"rlx: the checkpoint at update {step} is unusable ({reason}); "
                              f"continuing from update {done}", file=sys.stderr)  # fmt: skip
                    faults.point("resume.restored")
                if main:
                    member_keys = dict.fromkeys(k for m in self.pop.members for k in m)
                    csv = MetricsCSV(os.path.join(self.out_dir, "metrics.csv"), list(member_keys))
                    csv.repair(done, len(self.pop.members))
                    append_versions(os.path.join(self.out_dir, "versions.json"), done)
            timings = {"init_s": time.perf_counter() - t0, "compile_s": 0.0, "run_s": 0.0}
            return self._loop(state, cfg, done, ckpt, csv, timings)
        finally:
            if ckpt is not None:
                ckpt.close()
            if lock is not None:
                lock.release()

    def _loop(self, state, cfg, done, ckpt, csv, timings) -> RunResult:
        from rlx import faults, memory
        from rlx.distributed import is_main, to_host
        from rlx.errors import Interrupted

        chunks: list[dict[str, np.ndarray]] = []
        first_update = done
        bar = _Progress(self.progress and is_main(), self.num_updates, done, self.description)
        restore_sigint = self._catch_sigint()
        try:
            while done < self.num_updates:
                k = min(self.chunk_updates, self.num_updates - done)
                if k not in self._compiled:
                    t = time.perf_counter()
                    self._compiled[k] = self._chunk_fn(k).lower(state, cfg, self.env_params).compile()
                    timings["compile_s"] += time.perf_counter() - t
                    memory.check_program_fits(self._compiled[k], self._state_bytes, list(self.mesh.devices.flat))
                t = time.perf_counter()
                state, metrics = self._compiled[k](state, cfg, self.env_params)
                metrics = to_host(metrics)  # gathered from every process
                timings["run_s"] += time.perf_counter() - t
                faults.point("chunk.done")
                self._check_finite(metrics, done)
                # Counted from update 0, not from this call, so a resumed run evaluates and
                # checkpoints after the same chunks as an uninterrupted one.
                chunk_number = done // self.chunk_updates + 1
                if self.eval_every:
                    metrics["eval_return"] = self._maybe_evaluate(state, cfg, done, k, chunk_number)
                if csv is not None:
                    csv.append(metrics, self.pop.members, done)
                done += k
                chunks.append(metrics)
                stopping = self._stop_requested and done < self.num_updates
                if ckpt is not None and (chunk_number % self.checkpoint_every == 0 or done == self.num_updates or stopping):
                    ckpt.save(done, state, {"updates": done})
                    self.last_checkpoint = done
                bar.advance(k, metrics)
                if self.on_chunk is not None:
                    self.on_chunk(done, metrics)
                if stopping:
                    where = f"; saved in {self.out_dir}, continue with run(resume=True)" if self.out_dir else ""
                    raise Interrupted(f"interrupted at update {done} of {self.num_updates}{where}", done)
        finally:
            restore_sigint()
            bar.close()
        merged = {name: np.concatenate([c[name] for c in chunks], 1) for name in (chunks[0] if chunks else {})}
        return RunResult(state, merged, first_update, timings)

    def _catch_sigint(self) -> Callable[[], None]:
        """The first Ctrl-C asks the loop to stop at the next chunk boundary; the second
        stops at once (KeyboardInterrupt). Returns the function that puts the old handler back."""
        import signal
        import threading

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

    def _check_finite(self, metrics: dict[str, np.ndarray], first_update: int) -> None:
        for name in loss_names(metrics):
            bad = ~np.isfinite(metrics[name])
            if bad.any():
                member, j = np.argwhere(bad)[0]
                if self.last_checkpoint is not None:
                    kept = f"the checkpoint at update {self.last_checkpoint} is intact"
                else:
                    kept = "no checkpoint was written yet" if self.out_dir else "nothing was saved (no out_dir)"
                raise NonFiniteLossError(
                    f"{name} is {metrics[name][member, j]} at update {first_update + int(j)} "
                    f"(member {int(member)}, seed {self.pop.members[int(member)].get('seed')}); "
                    f"stopped, and {kept}. Lower lr or check the reward scale."
                )


class _Progress:
    """A rich progress bar over updates, showing env steps/s and the latest mean return."""

    def __init__(self, enabled: bool, total: int, done: int, description: str):
        self.enabled = enabled
        self.start = time.perf_counter()
        self.start_steps = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.p = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("updates"), TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
        )  # fmt: skip
        self.p.start()
        self.task = self.p.add_task(description, total=total, completed=done, info="compiling...")

    def advance(self, k: int, metrics: dict[str, np.ndarray]) -> None:
        if not self.enabled:
            return
        info = []
        if "env_steps" in metrics:
            steps = float(np.sum(metrics["env_steps"][:, -1]))
            if self.start_steps is None:
                self.start_steps = float(np.sum(metrics["env_steps"][:, 0]))
                self.start = time.perf_counter()
            elif time.perf_counter() > self.start:
                info.append(f"{(steps - self.start_steps) / (time.perf_counter() - self.start):,.0f} steps/s")
        if "episode_return" in metrics:
            with np.errstate(all="ignore"):
                r = np.nanmean(metrics["episode_return"][:, -1])
            info.append(f"return {r:.1f}")
        self.p.update(self.task, advance=k, info="  ".join(info))

    def close(self) -> None:
        if self.enabled:
            self.p.stop()
