"""The fully-jitted training function, built once for every agent.

    train = make_train(agent, cfg)
    state, metrics = jax.jit(train)(key, cfg, env_params)       # one run
    states, metrics = jax.jit(jax.vmap(train))(keys, cfgs, env_params_batch)  # a population

`train` is `init` followed by `lax.scan(update)`; it is pure, vmappable, shardable
and differentiable-through. `metrics` holds one row per update: `{name: [U]}`.

`Runner` runs a population (leading axis on keys and configs) on `rlx.hostloop`'s one
host loop, in jitted chunks, with checkpoints, metrics.csv, resume and progress.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import numpy as np

from rlx.errors import NonFiniteLossError  # noqa: F401  (part of this module's API)
from rlx.hostloop import HostLoop, jsonable, loss_names, spec_differences  # noqa: F401  (re-exported)
from rlx.types import Agent, check_config


def make_train(agent: Agent, cfg: Any, num_updates: int | None = None) -> Callable:
    """Return `train(key, cfg, env_params) -> (state, metrics)`.

    The number of updates comes from `cfg`'s static fields unless given.
    """
    check_config(agent, cfg)
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


def run_updates_upto(agent: Agent, state: Any, cfg: Any, env_params: Any, capacity: int, count: Any):
    """The first `count` (a traced int, at most `capacity`) updates: `(state, metrics{name:
    [capacity]})`, the rows from `count` on left at zero. The trip count is a runtime value,
    so one compiled program serves every chunk length, a run's shorter last chunk included
    (each new length used to cost a compile as long as the first)."""
    # One jitted update, so the body's trace reuses the one that sized the metric rows
    # (tracing the update is most of the chunk's lowering time).
    update = jax.jit(agent.update)
    shapes = jax.eval_shape(update, state, cfg, env_params)[1]
    rows = jax.tree.map(lambda m: jax.numpy.zeros((capacity, *m.shape), m.dtype), shapes)

    def body(i, carry):
        s, rows = carry
        s, m = update(s, cfg, env_params)
        return s, jax.tree.map(lambda r, x: jax.lax.dynamic_update_index_in_dim(r, x, i, 0), rows, m)

    return jax.lax.fori_loop(0, count, body, (state, rows))


# ---------------------------------------------------------------------------------
# A population on the host loop
# ---------------------------------------------------------------------------------

# Seed of the evaluation keys between chunks: fixed, and apart from any training seed's stream.
EVAL_KEY_SEED = 10_007


POPULATION_MODES = ("auto", "vmap", "map")

def run_once_options() -> dict | None:
    """XLA's compile options for programs that run once (the population's init): on CPU,
    LLVM's level-1 passes, which compile faster and give bitwise the same state
    (tests/test_contract.py compares every agent's Runner members with solo runs, whose
    init is compiled inside the whole training program; README, "Speed"). Level 0 changes
    float results."""
    return {"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else None


def resolve_population_mode(mode: str) -> str:
    """"auto" is "vmap" on every backend: batching members is what fills an accelerator,
    and on CPU it is also the faster mode (8 CartPole PPO seeds over 2 cores: 374k
    env-steps/s against 314k with "map", benchmarks/bench_purejaxrl.py). Ask for "map"
    where every member must equal its solo run bitwise."""
    return "vmap" if mode == "auto" else mode


def over_population(fn: Callable, mesh: Any, mode: str = "vmap", batch_size: int | None = None) -> Callable:
    """Lift `fn(state, cfg, env_params)` to a population (leading axis on state and cfg).

    "vmap" batches the members of each device into one program (fastest, the default). "map"
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
    """What `Runner.run` returns: the population state (leaves `[P, ...]`), this call's metrics
    `{name: [P, U]}` from update `first_update` on, and timings."""

    state: Any  # population state, leaves [P, ...]
    metrics: dict[str, np.ndarray]  # {name: [P, U']} for the updates run by this call
    first_update: int  # update index of metrics[:, 0]
    timings: dict[str, float] = field(default_factory=dict)


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"Runner {name} = {value!r} is invalid: it must be an integer >= {minimum}.")
    return int(value)


class Runner:
    """Runs a population in jitted chunks of updates on the host loop (`rlx.hostloop`).

    Between chunks the loop appends to `metrics.csv`, saves a verified orbax checkpoint of the
    full state, shows progress and stops on a non-finite loss. Results are bitwise equal
    to `jit(vmap(train))` on CPU for the same keys. A run killed at any point loses at
    most the chunk in flight; `run(resume=True)` continues from the newest checkpoint that
    verifies. Before anything in the run directory changes, the Runner takes its lock,
    refuses to overwrite another run, checks that a resumed run has the stored config
    (`config.json`) and that the state fits in memory. Ctrl-C stops at the next chunk
    boundary with everything saved (`rlx.errors.Interrupted`).

    `run_spec` holds what the caller wants stored in `config.json` and checked on resume
    (the CLI stores the algorithm, env and flags); the Runner adds its own part.
    `trackers` (e.g. `["tensorboard", "wandb"]`, see `rlx.tracking`) receive every chunk's
    metrics beside metrics.csv.
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
        trackers: Any = None,
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
        check_config(agent, self.template)
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
        # Tracker names (built, and closed at the end of run) or an rlx.tracking.Trackers (its
        # owner closes it, e.g. after logging the final evaluation).
        self._own_trackers = trackers is not None and not hasattr(trackers, "open")
        if trackers is not None:
            from rlx.tracking import Trackers

            if not out_dir:
                raise ValueError("Runner trackers need an out_dir: they write beside the run's metrics.csv.")
            trackers = Trackers(trackers) if self._own_trackers else trackers
        self.trackers = trackers
        self.eval_every = _positive_int("eval_every", eval_every, 0)
        self.eval_episodes = _positive_int("eval_episodes", eval_episodes)
        if eval_every and eval_env is None:
            raise ValueError("Runner eval_every needs eval_env: the (unwrapped) env to evaluate the policy on.")
        self.eval_env = eval_env
        self.run_spec = dict(run_spec or {})
        self._compiled: Any = None  # the chunk program, compiled on the first chunk

    # -- compiled pieces -------------------------------------------------------------
    def _init_over_population(self):
        return over_population(self.agent.init, self.mesh, self.population_mode, self.map_batch_size)

    def _init_fn(self):
        return jax.jit(self._init_over_population(), out_shardings=self.sharding)

    def _chunk_fn(self):
        """`chunk(state, cfg, (env_params, count))`: `count` (at most `chunk_updates`) updates
        for every member, metrics `{name: [P, chunk_updates]}`, jitted, donating the state."""
        agent, capacity = self.agent, self.chunk_updates

        def chunk(state, cfg, shared):
            env_params, count = shared
            return run_updates_upto(agent, state, cfg, env_params, capacity, count)

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

    # -- the program the host loop drives ----------------------------------------------
    @property
    def total(self) -> int:
        return self.num_updates

    @property
    def chunk(self) -> int:
        return self.chunk_updates

    @property
    def members(self) -> list[dict]:
        return self.pop.members

    def spec(self) -> dict:
        """What `config.json` holds: the caller's `run_spec` and the Runner's own part."""
        from rlx import config as config_lib

        runner = dict(
            population_config=config_lib.to_dict(self.pop.cfg), members=self.pop.members,
            num_updates=self.num_updates, chunk_updates=self.chunk_updates, population_mode=self.population_mode,
            map_batch_size=self.map_batch_size, eval_every=self.eval_every,
            eval_episodes=self.eval_episodes if self.eval_every else None,
        )  # fmt: skip
        return jsonable({**self.run_spec, "runner": runner})

    def check(self) -> None:
        """The state must fit in every device's memory."""
        from rlx import memory

        abstract = jax.eval_shape(self._init_over_population(), self.pop.keys, self.pop.cfg, self.env_params)
        self._state_bytes = memory.check_state_fits(
            abstract, self.template, len(self.pop.members), list(self.mesh.devices.flat)
        )

    def start(self, timings: dict) -> Any:
        from rlx import population as pop_lib

        self._cfg = pop_lib.shard(self.pop.cfg, self.mesh)
        keys = pop_lib.shard(self.pop.keys, self.mesh)
        init = self._init_fn().lower(keys, self._cfg, self.env_params)
        if self._compiled is not None or not self.num_updates:
            return init.compile(run_once_options())(keys, self._cfg, self.env_params)
        # The init and the chunk program compile side by side: XLA's compile lets go of the
        # GIL, so the chunk's tracing and compile overlap the init's compile.
        t = time.perf_counter()
        with ThreadPoolExecutor(1) as pool:
            init_compiled = pool.submit(init.compile, run_once_options())
            self._compile_chunk(init.out_info)
            init_compiled = init_compiled.result()
        timings["compile_s"] += time.perf_counter() - t
        return init_compiled(keys, self._cfg, self.env_params)

    def _compile_chunk(self, state: Any) -> None:
        """Compile the chunk program for `state` (arrays or `ShapeDtypeStruct`s, `[P, ...]`)."""
        from rlx import memory

        shared = (self.env_params, np.int32(self.chunk_updates))
        self._compiled = self._chunk_fn().lower(state, self._cfg, shared).compile()
        memory.check_program_fits(self._compiled, self._state_bytes, list(self.mesh.devices.flat))

    def restore_check(self, state: Any, meta: dict, step: int) -> str | None:
        from rlx.checkpoint import update_count_check

        return update_count_check(state, meta, step)

    def advance(self, state: Any, done: int, k: int, timings: dict) -> tuple[Any, dict[str, np.ndarray]]:
        """k updates of every member: `(state, {name: [P, k]})` on the host."""
        from rlx.distributed import to_host

        shared = (self.env_params, np.int32(k))
        if self._compiled is None:
            t = time.perf_counter()
            self._compile_chunk(state)
            timings["compile_s"] += time.perf_counter() - t
        t = time.perf_counter()
        state, metrics = self._compiled(state, self._cfg, shared)
        metrics = jax.tree.map(lambda m: m[:, :k], to_host(metrics))  # gathered from every process
        timings["run_s"] += time.perf_counter() - t
        if self.eval_every:
            # Counted from update 0, not from this call: a resumed run evaluates after the
            # same chunks as an uninterrupted one.
            chunk_number = done // self.chunk_updates + 1
            metrics["eval_return"] = self._maybe_evaluate(state, self._cfg, done, k, chunk_number)
        return state, metrics

    def run(self, resume: bool = False) -> RunResult:
        """Run (or, with `resume`, continue) the population on the host loop."""
        loop = HostLoop(
            self, self.out_dir, progress=self.progress, checkpoint_every=self.checkpoint_every,
            description=self.description, on_chunk=self.on_chunk, trackers=self.trackers,
        )  # fmt: skip
        failed = True
        try:
            state, metrics, first, timings = loop.run(resume)
            failed = False
        finally:
            self.last_checkpoint = loop.last_checkpoint
            if self._own_trackers:
                self.trackers.close(failed)
        return RunResult(state, metrics, first, timings)
