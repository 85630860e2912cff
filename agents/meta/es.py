"""Evolution strategies over any traced config field of any agent's `train`.

The inner loop is the core's `train(key, cfg, env_params)`: a candidate θ is placed in
the config (`cfg.replace(**{field: θ})`, so `field` must be a traced field) and trained
from scratch for the full run. Its fitness is the final return of that run (averaged
over `seeds` inner runs), divided by a per-task reference return and averaged over the
meta-training tasks. The outer loop is evosax 0.3's OpenES (Salimans et al. 2017) with
Adam, centered-rank fitness shaping and exponentially decaying learning rate and σ:

    trainer = MetaTrainer([MetaTask("cartpole", train, cfg, env_params)], "drift_params",
                          init=drifts.init_params("lpo", None), es=ESConfig(), out_dir="runs/lpo")
    result = trainer.run()            # .run(resume=True) continues from the last checkpoint

evosax minimises, so it is told the negated fitness. The candidate axis `[P]` is sharded
over a 1-D device mesh; inside each device's shard the candidates run `chunk` at a time
(`lax.map` over chunks of a `vmap`), the memory knob for long inner loops. With
`chunk = 1` every candidate runs exactly the program of a solo run, so its fitness is
bitwise that of `train` with the same key, on any number of devices.

The generations run on the one host loop (`rlx.hostloop`): every generation appends a
row to `metrics.csv`, writes `mean.npz` (the ES mean) and `best.npz` (the best candidate
seen) and a verified orbax checkpoint of the ES state; `config.json` holds the ES
settings. Keys are derived from `(seed, generation)`, so a resumed run repeats the
generations an uninterrupted run would have made, bit for bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlx.config import config, is_static, static, to_dict
from rlx.errors import NonFiniteLossError

SHAPINGS = ("centered_rank", "z_score", "raw")
NAN_POLICIES = ("worst", "raise")


@config
class ESConfig:
    """OpenES settings. Defaults follow Goldie et al. 2025 (lr and σ 0.03, each decayed by 0.99 a generation) except the sizes (theirs: population 64, 800 generations)."""

    population_size: int = static(16, "candidates per generation (even: OpenES samples ±z pairs)", ge=2)
    generations: int = static(10, "ES generations", ge=1)
    lr: float = static(0.03, "Adam learning rate of the ES mean", gt=0)
    lr_decay: float = static(0.99, "learning rate multiplied by this every generation", gt=0, le=1)
    sigma: float = static(0.03, "initial perturbation scale σ", gt=0)
    sigma_decay: float = static(0.99, "σ multiplied by this every generation", gt=0, le=1)
    antithetic: bool = static(True, "sample mirrored pairs θ ± σz")
    fitness_shaping: str = static("centered_rank", "how raw fitness becomes ES weights", choices=SHAPINGS)
    seeds: int = static(1, "inner runs per candidate and task; fitness is their mean", ge=1)
    common_seeds: bool = static(True, "every candidate of a generation uses the same inner keys")
    chunk: int = static(-1, "candidates run at once on a device: 0 = all (vmap), 1 = one by one (lax.map, bitwise equal to solo runs), k = lax.map over chunks of k, -1 = 1 on CPU and 0 on accelerators", ge=-1)
    devices: int = static(0, "devices the candidate axis is sharded over; 0 = the most that divide the population", ge=0)
    nan_policy: str = static("worst", "a NaN fitness (or a diverged inner run) ranks last, or stops the run", choices=NAN_POLICIES)
    eval_every: int = static(1, "score the ES mean every this many generations on fixed keys (0 = never)", ge=0)
    eval_seeds: int = static(4, "inner runs used to score the ES mean", ge=1)
    seed: int = static(0, "seed of the ES (sampling and inner keys)")

    def check(self) -> None:
        if self.population_size % 2:
            why = "antithetic sampling pairs every +z with -z" if self.antithetic else "evosax 0.3's OpenES requires it"
            raise ValueError(
                f"ESConfig.population_size = {self.population_size} is invalid: it must be even ({why}); "
                f"use {self.population_size + 1}."
            )


class MetaTask(NamedTuple):
    """One meta-training environment.

    train: `train(key, cfg, env_params) -> (state, metrics)`, e.g. `rlx.train.make_train`.
    cfg: the base config; the ES field is replaced per candidate.
    reference: the fitness of a run is `score / reference` (e.g. PPO's return there).
    score: `score(state, metrics) -> scalar`; default `final_return`.
    """

    name: str
    train: Callable
    cfg: Any
    env_params: Any
    reference: float = 1.0
    score: Callable | None = None


def final_return(state: Any, metrics: dict) -> jax.Array:
    """The last update's `episode_return` (scalar), or NaN if any loss of the run was not
    finite (a diverged inner run is a failed candidate, not a lucky one)."""
    ok = jnp.array(True)
    for name, value in metrics.items():
        if "loss" in name:
            ok = ok & jnp.all(jnp.isfinite(value))
    return jnp.where(ok, metrics["episode_return"][-1], jnp.nan)


def with_candidate(cfg: Any, field: str | Sequence[str], theta: Any) -> Any:
    """`cfg` with the candidate in place: one field, or a dict of several."""
    if isinstance(field, str):
        return cfg.replace(**{field: theta})
    return cfg.replace(**{name: theta[name] for name in field})


def check_field(cfg: Any, field: str | Sequence[str]) -> None:
    """Raise unless every name is a traced field of `cfg` (static fields shape the program)."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    for name in [field] if isinstance(field, str) else field:
        if name not in fields:
            raise ValueError(f"{type(cfg).__name__} has no field {name!r}; traced fields: {_traced(cfg)}.")
        if is_static(fields[name]):
            raise ValueError(
                f"{type(cfg).__name__}.{name} is static (it shapes the compiled program), so ES cannot "
                f"optimise it; traced fields: {_traced(cfg)}."
            )


def _traced(cfg: Any) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cfg) if not is_static(f))


def candidate_fitness(tasks: Sequence[MetaTask], field: str | Sequence[str], sequential: bool) -> Callable:
    """`fit(keys [S], theta, context) -> [T]`: each task's score, mean over the S inner
    runs, divided by its reference. `context` is `[(cfg, env_params)]` per task, passed
    in rather than closed over: as constants XLA would fold them into the program and a
    member would no longer compute exactly what a solo `train(key, cfg, env_params)` does.
    `sequential` runs the seeds with `lax.map` (one seed is called directly) instead of `vmap`."""

    def fit(keys, theta, context):
        out = []
        for task, (base, env_params) in zip(tasks, context):
            score = task.score or final_return
            cfg = with_candidate(base, field, theta)

            def one(key, task=task, cfg=cfg, env_params=env_params, score=score):
                return score(*task.train(key, cfg, env_params))

            if keys.shape[0] == 1:
                s = one(keys[0])[None]
            elif sequential:
                s = jax.lax.map(one, keys)
            else:
                s = jax.vmap(one)(keys)
            out.append(jnp.mean(s) / task.reference)
        return jnp.stack(out)

    return fit


def population_fitness(fit: Callable, mesh: Any, chunk: int) -> Callable:
    """Lift `fit(keys [S], theta, context) -> [T]` to `(keys [P, S], thetas [P, ...], context)
    -> [P, T]`, jitted, with P split over `mesh` (context replicated) and each device's
    share run `chunk` at a time."""
    from jax.sharding import PartitionSpec

    def local(keys, thetas, context):
        if chunk == 0:
            return jax.vmap(fit, (0, 0, None))(keys, thetas, context)
        pair = lambda kt: fit(kt[0], kt[1], context)  # noqa: E731
        if chunk == 1:
            return jax.lax.map(pair, (keys, thetas))
        return jax.lax.map(pair, (keys, thetas), batch_size=chunk)

    spec = PartitionSpec("pop")
    return jax.jit(
        jax.shard_map(local, mesh=mesh, in_specs=(spec, spec, PartitionSpec()), out_specs=spec, check_vma=False)
    )


class ESResult(NamedTuple):
    """What `MetaTrainer.run` returns: the final ES mean, the best candidate, the per-generation
    history, the evosax state, timings and the final mean's fitness per evaluation seed `[E]`."""

    mean: Any  # the final ES mean, a pytree like `init`
    best: Any  # the best candidate seen (by its own generation's fitness)
    history: dict[str, np.ndarray]  # metrics.csv as columns, one row per generation
    state: Any  # the evosax state
    timings: dict[str, float]  # compile_s, run_s (population evaluations), eval_s (ES-mean scoring)
    final_mean_fitness: np.ndarray | None  # [E] per-seed fitness of the final mean on the evaluation keys


class MetaTrainer:
    """OpenES over `field` of every task's config, starting from the mean `init`."""

    def __init__(
        self,
        tasks: Sequence[MetaTask],
        field: str | Sequence[str],
        init: Any,
        es: ESConfig | None = None,
        out_dir: str | None = None,
        progress: bool = True,
        on_generation: Callable[[int, dict], None] | None = None,
    ):
        from evosax.algorithms import Open_ES

        from rlx import population as pop_lib

        self.tasks = list(tasks)
        if not self.tasks:
            raise ValueError("MetaTrainer needs at least one MetaTask.")
        for task in self.tasks:
            check_field(task.cfg, field)
            if not task.reference > 0:
                raise ValueError(f"MetaTask {task.name!r}: reference = {task.reference} must be > 0.")
        self.field = field
        self.es = es = es or ESConfig()
        self.init = jax.tree.map(jnp.asarray, init)
        if not jax.tree.leaves(self.init):
            raise ValueError(f"init for {field!r} has no array leaves: there is nothing to optimise.")
        for task in self.tasks:
            with_candidate(task.cfg, field, self.init)  # the config validates the start point now
        self.out_dir = out_dir
        self.progress = progress
        self.on_generation = on_generation
        size = es.population_size
        self.devices = pop_lib.default_devices(size) if es.devices == 0 else es.devices
        pop_lib.check_devices(size, self.devices)
        self.mesh = pop_lib.make_mesh(self.devices)
        self.eval_mesh = pop_lib.make_mesh(math.gcd(es.eval_seeds, self.devices))

        self.lr_schedule = optax.exponential_decay(es.lr, 1, es.lr_decay)
        self.sigma_schedule = optax.exponential_decay(es.sigma, 1, es.sigma_decay)
        self.strategy = Open_ES(
            population_size=size,
            solution=self.init,
            use_antithetic_sampling=es.antithetic,
            optimizer=optax.adam(self.lr_schedule),
            std_schedule=self.sigma_schedule,
            fitness_shaping_fn=_shaping(es.fitness_shaping),
        )
        # On CPU one-by-one is bitwise reproducible and was faster here (rlx.train's "map"
        # population mode); accelerators need the batch to fill the device.
        # Not `chunk`: that is the host loop's generations per chunk (this class is its program).
        self.candidate_batch = es.chunk if es.chunk >= 0 else (1 if jax.default_backend() == "cpu" else 0)
        fit = candidate_fitness(self.tasks, field, sequential=self.candidate_batch == 1)
        self._population = population_fitness(fit, self.mesh, self.candidate_batch)
        self._eval = population_fitness(fit, self.eval_mesh, self.candidate_batch)
        self._compiled: dict[str, Callable] = {}
        # Every task's base config and env params, as arguments of the compiled program.
        self.context = [(t.cfg, t.env_params) for t in self.tasks]

    # -- pure pieces, usable on their own ---------------------------------------------------
    def inner_keys(self, key: jax.Array) -> jax.Array:
        """`[P, S]` inner-run keys of one generation (shared by all candidates if `common_seeds`)."""
        p, s = self.es.population_size, self.es.seeds
        if self.es.common_seeds:
            keys = jax.random.split(key, s)
            return jnp.stack([keys] * p)
        return jax.random.split(key, (p, s))

    def evaluate(self, keys: jax.Array, thetas: Any, timings: dict | None = None) -> np.ndarray:
        """Normalised scores `[P, T]` of a population `thetas` (leaves `[P, ...]`)."""
        keys, thetas = _shard((keys, thetas), self.mesh)
        context = _replicate(self.context, self.mesh)
        fn = self._compile("population", self._population, (keys, thetas, context), timings)
        return np.asarray(jax.device_get(fn(keys, thetas, context)))

    def evaluate_mean(self, mean: Any, timings: dict | None = None) -> np.ndarray:
        """Per-seed fitness `[E]` (mean over tasks) of one θ on the fixed evaluation keys."""
        e = self.es.eval_seeds
        keys = jax.random.split(jax.random.fold_in(jax.random.key(self.es.seed), 2**31 - 1), (e, 1))
        thetas = jax.tree.map(lambda x: jnp.stack([x] * e), mean)
        keys, thetas = _shard((keys, thetas), self.eval_mesh)
        context = _replicate(self.context, self.eval_mesh)
        fn = self._compile("eval", self._eval, (keys, thetas, context), timings)
        return np.asarray(jax.device_get(fn(keys, thetas, context))).mean(-1)

    def _compile(self, name: str, fn: Callable, args: tuple, timings: dict | None) -> Callable:
        """Compile once, ahead of time, so compile time is reported apart from run time."""
        if name not in self._compiled:
            t = time.perf_counter()
            self._compiled[name] = fn.lower(*args).compile()
            if timings is not None:
                timings["compile_s"] += time.perf_counter() - t
        return self._compiled[name]

    def generation_keys(self, generation: int) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(ask, inner, tell) keys of a generation: a function of (seed, generation) only."""
        k = jax.random.fold_in(jax.random.key(self.es.seed), generation)
        k_ask, k_inner, k_tell = jax.random.split(k, 3)
        return k_ask, k_inner, k_tell

    def init_state(self) -> Any:
        return self.strategy.init(jax.random.key(self.es.seed), self.init, self.strategy.default_params)

    # -- the program the host loop drives (rlx.hostloop) ------------------------------------------
    step_name = "generation"
    progress_keys = ("fitness_mean", "fitness_max", "mean_fitness")
    chunk = 1

    @property
    def total(self) -> int:
        return self.es.generations

    @property
    def members(self) -> list[dict]:
        return [{"member": 0, "seed": self.es.seed}]

    def spec(self) -> dict:
        """config.json: every ES setting but `generations` (a resume may extend the run)."""
        es = {k: v for k, v in to_dict(self.es).items() if k != "generations"}
        return {
            "kind": "es", "es": es, "field": self.field, "tasks": [t.name for t in self.tasks],
            "references": [t.reference for t in self.tasks], "placement": {"devices": self.devices},
        }  # fmt: skip

    def check(self) -> None:
        pass

    def start(self, timings: dict) -> Any:
        timings.setdefault("eval_s", 0.0)
        return self.init_state()

    def advance(self, state: Any, g: int, k: int, timings: dict) -> tuple[Any, dict[str, np.ndarray]]:
        """One generation (k = 1): ask, train every candidate, tell. Metrics are `[1, 1]`."""
        es, strategy, params = self.es, self.strategy, self.strategy.default_params
        t0 = time.perf_counter()
        k_ask, k_inner, k_tell = self.generation_keys(g)
        row: dict[str, Any] = {"mean_fitness": np.nan, "mean_fitness_std": np.nan}
        if es.eval_every and g % es.eval_every == 0:
            with _timed(timings, "eval_s"):
                scores = self.evaluate_mean(strategy.get_mean(state), timings)
            row.update(mean_fitness=float(np.mean(scores)), mean_fitness_std=float(np.std(scores)))
        thetas, state = strategy.ask(k_ask, state, params)
        with _timed(timings, "run_s"):
            scores = self.evaluate(self.inner_keys(k_inner), thetas, timings)  # [P, T]
        fitness = scores.mean(-1)
        bad = ~np.isfinite(fitness)
        if bad.all() or (bad.any() and es.nan_policy == "raise"):
            raise NonFiniteLossError(
                f"ES generation {g}: fitness of candidates {np.flatnonzero(bad).tolist()} is not finite "
                f"(nan_policy = {es.nan_policy!r}); the ES state was not updated"
            )
        state, _ = strategy.tell(k_tell, thetas, -self._for_shaping(fitness, bad), state, params)
        # evosax sets σ = schedule(counter) before incrementing the counter, which
        # repeats σ0 in generation 1; we keep generation g at σ0·decay^g.
        state = state.replace(std=self.sigma_schedule(g + 1))
        row.update(_population_stats(fitness, scores, [t.name for t in self.tasks]))
        row.update(
            nan_count=int(bad.sum()), sigma=float(self.sigma_schedule(g)), lr=float(self.lr_schedule(g)),
            best_fitness=-float(state.best_fitness), seconds=time.perf_counter() - t0,
        )  # fmt: skip
        return state, {name: np.asarray([[value]]) for name, value in row.items()}

    def write_files(self, out_dir: str, state: Any, done: int) -> None:
        save_params(os.path.join(out_dir, "mean.npz"), self.strategy.get_mean(state))
        save_params(os.path.join(out_dir, "best.npz"), self._best(state))

    def run(self, resume: bool = False, trackers: Any = None) -> ESResult:
        """All generations on the host loop (`metrics.csv`, checkpoints, resume), then the
        final ES mean scored on the evaluation keys. `trackers`: an `rlx.tracking.Trackers`
        that receives every generation's metrics (its owner closes it)."""
        from rlx.hostloop import HostLoop
        from rlx.logging import read_metrics, write_json

        def on_chunk(done: int, metrics: dict) -> None:
            if self.on_generation is not None:
                self.on_generation(done - 1, {"generation": done - 1, **{n: v[0, -1].item() for n, v in metrics.items()}})

        loop = HostLoop(self, self.out_dir, progress=self.progress, description="ES", on_chunk=on_chunk,
                        trackers=trackers, nan_advice="Lower sigma or lr, or check the inner runs.")  # fmt: skip
        state, metrics, first, timings = loop.run(resume)
        final = None
        if self.es.eval_every:
            with _timed(timings, "eval_s"):
                final = self.evaluate_mean(self.strategy.get_mean(state), timings)
        if self.out_dir:  # the whole history, earlier calls' generations included
            history = {n: v for n, v in read_metrics(os.path.join(self.out_dir, "metrics.csv")).items()
                       if n not in ("member", "seed")}  # fmt: skip
            write_json(os.path.join(self.out_dir, "summary.json"), {
                "generations": self.es.generations, "final_mean_fitness": final, "timings": timings,
                "best_fitness": -float(state.best_fitness),
            })  # fmt: skip
        else:
            history = {"generation": np.arange(first, self.es.generations, dtype=float)}
            history.update({n: np.asarray(v[0], float) for n, v in metrics.items()})
        return ESResult(self.strategy.get_mean(state), self._best(state), history, state, timings, final)

    def _for_shaping(self, fitness: np.ndarray, bad: np.ndarray) -> np.ndarray:
        """Failed candidates rank last: -inf for rank shaping, the worst finite value otherwise
        (z-scores of an infinity would be NaN for every candidate)."""
        if not bad.any():
            return fitness
        worst = -np.inf if self.es.fitness_shaping == "centered_rank" else np.min(fitness[~bad])
        return np.where(bad, worst, fitness)

    def _best(self, state: Any) -> Any:
        flat = jnp.where(jnp.isfinite(state.best_solution), state.best_solution, state.mean)
        return self.strategy._unravel_solution(flat)


@contextlib.contextmanager
def _timed(timings: dict, name: str):
    """Add the block's wall time, less any compile time it spent, to `timings[name]`."""
    t, c = time.perf_counter(), timings["compile_s"]
    yield
    timings[name] += time.perf_counter() - t - (timings["compile_s"] - c)


def _shard(tree: Any, mesh: Any) -> Any:
    from rlx.population import shard

    return shard(tree, mesh)


def _replicate(tree: Any, mesh: Any) -> Any:
    from jax.sharding import NamedSharding, PartitionSpec

    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def _shaping(name: str) -> Callable:
    from evosax.core import fitness_shaping as fs

    return {
        "centered_rank": fs.centered_rank_fitness_shaping_fn,
        "z_score": fs.standardize_fitness_shaping_fn,
        "raw": fs.identity_fitness_shaping_fn,
    }[name]


def _population_stats(fitness: np.ndarray, scores: np.ndarray, names: list[str]) -> dict[str, float]:
    with np.errstate(all="ignore"):
        out = {
            "fitness_mean": float(np.nanmean(fitness)), "fitness_std": float(np.nanstd(fitness)),
            "fitness_min": float(np.nanmin(fitness)), "fitness_median": float(np.nanmedian(fitness)),
            "fitness_max": float(np.nanmax(fitness)),
        }  # fmt: skip
        if len(names) > 1:
            for i, name in enumerate(names):
                out[f"fitness_{name}"] = float(np.nanmean(scores[:, i]))
    return out


# -- parameter files ------------------------------------------------------------------------------
def save_params(path: str, tree: Any) -> None:
    """A pytree of arrays as an `.npz`, one entry per leaf named by its path (e.g. `['w1']`)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    arrays = {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)  # never leave a half-written file behind


def load_params(path: str, like: Any = None) -> Any:
    """Read `save_params` output: into the structure of `like`, or (without it) as nested
    dicts when every path is made of dict keys."""
    with np.load(path) as data:
        arrays = {k: jnp.asarray(data[k]) for k in data.files}
    if like is not None:
        leaves, treedef = jax.tree_util.tree_flatten_with_path(like)
        missing = [jax.tree_util.keystr(p) for p, _ in leaves if jax.tree_util.keystr(p) not in arrays]
        if missing:
            raise ValueError(f"{path} lacks entries {missing}; it holds {sorted(arrays)}.")
        return jax.tree_util.tree_unflatten(treedef, [arrays[jax.tree_util.keystr(p)] for p, _ in leaves])
    out: dict = {}
    for name, value in arrays.items():
        keys = re.findall(r"\['([^']*)'\]", name)
        if "".join(f"['{k}']" for k in keys) != name:
            raise ValueError(f"{path}: entry {name!r} is not a dict path; pass `like` to load it.")
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return out
