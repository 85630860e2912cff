"""GROOVE (Jackson et al. 2023): a regret-driven curriculum of grid-world levels for
meta-training LPG, in the style of prioritised level replay.

A level's **algorithmic regret** is `A2C return - LPG return`: the exact expected return
of an A2C agent trained from scratch on the level for the level's lifetime (the
antagonist), minus that of an agent trained by the current learned rule (estimated in
`run` by the ES population's average exact return on the level: its ± pairs straddle the
ES mean). The antagonist's run does not depend on the meta-parameters, so it is computed
**once per level**, when the level first appears, and kept in the buffer (`antagonist`);
only the LPG side is recomputed when a level is replayed.

Alternative scores, also from the antagonist's run (once per level): positive value loss
(PVL, mean of the positive GAE advantages of its final rollout) and MaxMC (mean of
`max return seen - V(s)` over that rollout). `score = "uniform"` never replays.

    buf = init_buffer(capacity, template_level)
    levels, idx = sample(key, buf, dist, n, replay_prob)        # idx = -1 for fresh levels
    buf = update(buf, idx, levels, scores, antagonist, pvl, maxmc)

`run(...)` is the whole loop around the part-1 `MetaTrainer`: each generation draws its
levels, every ES candidate trains a fresh agent on all of them for their full lifetimes
(the same levels for every ± pair: antithetic task sampling), and the buffer is updated.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from rlx.agents.meta import lpg
from rlx.envs import meta_grid as mg

SCORES = ("regret", "pvl", "maxmc", "uniform")


@flax.struct.dataclass
class LevelBuffer:
    """The curriculum's level buffer of capacity C: levels and their scores, each `[C]`."""

    levels: mg.Level  # [C]
    score: jax.Array  # float32 [C], the priority score (higher = replayed more)
    antagonist: jax.Array  # float32 [C], A2C's exact return (once per level)
    pvl: jax.Array  # float32 [C]
    maxmc: jax.Array  # float32 [C]
    valid: jax.Array  # bool [C]
    replays: jax.Array  # int32 [C]


def init_buffer(capacity: int, template: mg.Level) -> LevelBuffer:
    """An empty buffer of `capacity` levels shaped like `template` (one level, or its
    `jax.eval_shape`)."""
    if capacity < 1:
        raise ValueError(f"init_buffer: capacity = {capacity} is invalid: it must be >= 1.")
    z = jnp.zeros(capacity)
    levels = jax.tree.map(lambda x: jnp.zeros((capacity,) + tuple(x.shape), x.dtype), template)
    return LevelBuffer(levels, z, z, z, z, jnp.zeros(capacity, bool), jnp.zeros(capacity, jnp.int32))


def replay_weights(buf: LevelBuffer, temperature: float = 1.0) -> jax.Array:
    """[C] rank prioritisation over valid entries: h = (1 / rank)^(1/temperature)."""
    order = jnp.argsort(-jnp.where(buf.valid, buf.score, -jnp.inf))
    rank = jnp.empty_like(order).at[order].set(jnp.arange(1, order.size + 1))
    w = jnp.where(buf.valid, (1.0 / rank) ** (1.0 / temperature), 0.0)
    return w / jnp.maximum(w.sum(), 1e-12)


def sample(key, buf: LevelBuffer, dist: mg.GridDistribution, n: int, replay_prob: float,
           temperature: float = 1.0) -> tuple[mg.Level, jax.Array]:  # fmt: skip
    """`n` levels: each replayed from the buffer with probability `replay_prob` (when it
    holds any), else fresh from `dist`. Returns (levels [n], buffer index or -1 [n])."""
    k_coin, k_pick, k_new = jax.random.split(key, 3)
    fresh = mg.sample_levels(k_new, dist, n)
    replay = (jax.random.uniform(k_coin, (n,)) < replay_prob) & buf.valid.any()
    idx = jax.random.choice(k_pick, buf.valid.size, (n,), p=replay_weights(buf, temperature))
    pick = jax.tree.map(lambda b: b[idx], buf.levels)
    levels = jax.tree.map(lambda a, b: jnp.where(replay.reshape((n,) + (1,) * (a.ndim - 1)), b, a), fresh, pick)
    return levels, jnp.where(replay, idx, -1)


def update(buf: LevelBuffer, idx: jax.Array, levels: mg.Level, score: jax.Array, antagonist: jax.Array,
           pvl: jax.Array, maxmc: jax.Array) -> LevelBuffer:  # fmt: skip
    """Replayed levels (idx >= 0) get their new score; fresh levels take the slot of the
    lowest-scoring entry (empty slots first) when they score higher than it. `idx`,
    `levels` and the scores are `[N]`, one per drawn level."""
    buf = buf.replace(score=buf.score.at[jnp.where(idx >= 0, idx, buf.score.size)].set(score, mode="drop"),
                      replays=buf.replays.at[jnp.where(idx >= 0, idx, buf.score.size)].add(1, mode="drop"))  # fmt: skip

    def insert(buf, i):
        worst = jnp.argmin(jnp.where(buf.valid, buf.score, -jnp.inf))
        take = (idx[i] < 0) & (~buf.valid[worst] | (score[i] > buf.score[worst]))
        put = lambda b, x: b.at[worst].set(jnp.where(take, x, b[worst]))  # noqa: E731
        new = buf.replace(
            levels=jax.tree.map(lambda b, l: put(b, l[i]), buf.levels, levels), score=put(buf.score, score[i]),
            antagonist=put(buf.antagonist, antagonist[i]), pvl=put(buf.pvl, pvl[i]), maxmc=put(buf.maxmc, maxmc[i]),
            valid=put(buf.valid, True), replays=put(buf.replays, 0),
        )  # fmt: skip
        return new, None

    buf, _ = jax.lax.scan(insert, buf, jnp.arange(idx.size))
    return buf


class Antagonist(NamedTuple):
    """A2C's results on one level: its exact expected return, PVL and MaxMC scores (scalars)."""

    ret: jax.Array  # exact expected return of the trained A2C agent
    pvl: jax.Array
    maxmc: jax.Array


def make_antagonist(env: mg.MetaGrid, a2c_cfg: lpg.LPGConfig) -> Callable:
    """`antagonist(key, level) -> Antagonist`: A2C from scratch for the level's lifetime, its
    exact return, and PVL / MaxMC from one more rollout with its final policy and critic."""
    if a2c_cfg.update_rule != "a2c":
        raise ValueError(f"make_antagonist: a2c_cfg.update_rule = {a2c_cfg.update_rule!r}, expected 'a2c'.")
    train = lpg.make_train(env, a2c_cfg)

    def antagonist(key, level):
        state, metrics = train(key, a2c_cfg, level)
        state, traj = lpg.rollout(state, env, a2c_cfg, level)
        v = lpg._mlp(state.params["y"], traj.obs)[..., 0]
        v_next = lpg._mlp(state.params["y"], traj.next_obs)[..., 0]
        adv, ret = lpg.gae(traj.reward, v, v_next, traj.terminated, traj.done, a2c_cfg.gamma, a2c_cfg.lam)
        pvl = jnp.mean(jnp.maximum(adv, 0.0))
        maxmc = jnp.mean(jnp.max(ret) - v)
        return Antagonist(metrics["return"][0], pvl, maxmc)

    return antagonist


def regret(antagonist_return: jax.Array, agent_return: jax.Array) -> jax.Array:
    """Algorithmic regret: A2C's return minus the LPG agent's, both exact; any shape
    (elementwise)."""
    return antagonist_return - agent_return


class GrooveResult(NamedTuple):
    """What a GROOVE run returns: the final ES mean, history, drawn levels, the final buffer
    and the held-out score `[H]` (return over optimum per held-out level)."""

    mean: Any  # final ES mean (meta-network parameters)
    history: dict  # per generation: fitness, regret and level statistics
    drawn: dict  # every drawn level's statistics, concatenated over generations
    buffer: LevelBuffer
    held_out: np.ndarray | None  # [H] final mean's return / optimum on the held-out levels


def run(env: mg.MetaGrid, cfg: lpg.LPGConfig, a2c_cfg: lpg.LPGConfig, dist: mg.GridDistribution, init: Any,
        es: Any, levels_per_generation: int, scores: tuple = ("regret", "uniform"), capacity: int = 4000,
        replay_prob: float = 0.5, temperature: float = 1.0, seed: int = 0, progress: bool = False,
        held_out: mg.Level | None = None, out_dir: str | None = None, resume: bool = False) -> dict:  # fmt: skip
    """Meta-train LPG with OpenES (part 1's `MetaTrainer`: its strategy, schedules, keys and
    device mesh) once per curriculum in `scores` (each one of SCORES; "uniform" draws only
    fresh levels), all from the same start and ES keys. One compiled program, run by
    `population_fitness`, trains every candidate on every level and returns per-level
    numbers; it serves all curricula, the regret and the held-out test. `held_out` (a batch
    of levels, a multiple of `levels_per_generation`) scores each final ES mean, and `init`
    under key "init", by return / optimum. Each curriculum runs on the host loop
    (`rlx.hostloop`); with `out_dir`, in `out_dir/<score>` (metrics.csv, checkpoints), and
    `resume=True` continues interrupted curricula exactly.
    Returns `{score: GrooveResult}` (plus "init" with only `held_out` when given)."""
    for score in scores:
        if score not in SCORES:
            raise ValueError(f"groove.run: score = {score!r} is invalid: accepted values are {SCORES}.")
    if not 0.0 <= replay_prob <= 1.0:
        raise ValueError(f"groove.run: replay_prob = {replay_prob} is invalid: it must be in [0, 1].")
    L = levels_per_generation
    if held_out is not None and held_out.size.shape[0] % L:
        raise ValueError(f"groove.run: {held_out.size.shape[0]} held-out levels is not a multiple of "
                         f"levels_per_generation = {L}.")  # fmt: skip
    import os

    from rlx.hostloop import HostLoop

    parts = _Parts(env, cfg, a2c_cfg, dist, init, es, L, seed)
    results = {}
    for score in scores:
        program = Curriculum(parts, score, capacity, replay_prob, temperature)
        where = os.path.join(out_dir, score) if out_dir else None
        loop = HostLoop(program, where, progress=progress, description=f"GROOVE {score}")
        state, metrics, first, _ = loop.run(resume)
        results[score] = program.result(state, where, metrics, first)
    if held_out is not None:
        _held_out_test(parts, results, scores, init, held_out)
    return results


class _Parts:
    """What every curriculum shares: the ES trainer, the compiled candidates-by-levels
    program, the antagonist, and the buffer's jitted sample and update."""

    def __init__(self, env, cfg, a2c_cfg, dist, init, es, L, seed):
        from jax.sharding import NamedSharding, PartitionSpec

        from rlx.agents.meta.es import MetaTask, MetaTrainer, population_fitness

        self.dist, self.es, self.L, self.init, self.seed = dist, es, L, init, seed
        self.key = jax.random.key(seed)
        train = lpg.make_train(env, cfg)
        self.trainer = trainer = MetaTrainer([MetaTask("grid", train, cfg, None)], "lpg_params", init, es, progress=False)

        def fit(keys, theta, context):  # keys [S], context (cfg, levels [L]) -> [3, L]
            base, levels = context
            c = base.replace(lpg_params=theta)

            def per_seed(k):
                # lpg's train runs a batch of one level unbatched (a smaller program), same numbers.
                run = train if L == 1 else lambda k, c, lv: jax.vmap(train, (0, None, 0))(jax.random.split(k, L), c, lv)
                m = {n: jnp.reshape(v, (L,)) for n, v in run(k, c, levels)[1].items()}
                ok = jnp.isfinite(m["policy_loss"])  # a diverged inner run fails the candidate
                return jnp.stack([jnp.where(ok, m["episode_return"], jnp.nan), m["return"], m["optimal_return"]])

            return jnp.mean(jax.vmap(per_seed)(keys), 0)

        pop = population_fitness(fit, trainer.mesh, trainer.candidate_batch)
        split, whole = NamedSharding(trainer.mesh, PartitionSpec("pop")), NamedSharding(trainer.mesh, PartitionSpec())

        def evaluate(keys, thetas, levels):
            """[P, 3, L]: per candidate and level, return / optimum, return and optimum."""
            keys, thetas = jax.device_put((keys, thetas), split)
            return np.asarray(pop(keys, thetas, jax.device_put((cfg, levels), whole)))

        self.evaluate = evaluate
        one = make_antagonist(env, a2c_cfg)

        @jax.jit
        def antagonist(keys, levels, fresh, cached):
            # lax.map + cond really skips replayed levels: A2C runs once per level, when it is new.
            def f(x):
                k, lv, new, old = x
                return jax.lax.cond(new, lambda: one(k, lv), lambda: old)

            return jax.lax.map(f, (keys, levels, fresh, cached))

        self.antagonist = antagonist
        self.sample = jax.jit(sample, static_argnums=(2, 3))
        self.update = jax.jit(update)
        self.level_template = jax.eval_shape(lambda: mg.sample_level(self.key, dist))


class CurriculumState(NamedTuple):
    """The curriculum's state between generations: ES state, level buffer, A2C runs (scalar)."""

    es: Any  # the evosax state
    buffer: LevelBuffer
    antagonist_runs: jax.Array  # int32 []: A2C runs so far (one per new level)


HISTORY = ("fitness_mean", "fitness_max", "regret_mean", "replayed", "optimal_return", "lifetime",
           "episode_length", "antagonist_runs", "seconds")  # fmt: skip
DRAWN = ("replayed", "optimal_return", "lifetime", "episode_length", "size", "num_objects", "regret")


class Curriculum:
    """One GROOVE curriculum (`score`) as a program of the host loop: a step is one ES
    generation on `L` levels drawn from the buffer or the distribution. Per generation
    the metrics hold the HISTORY numbers and, as `[L]` vectors, every drawn level's
    statistics (`drawn_<name>`)."""

    step_name = "generation"
    chunk = 1
    progress_keys = ("fitness_mean", "regret_mean", "replayed")

    def __init__(self, parts: _Parts, score: str, capacity: int, replay_prob: float, temperature: float):
        self.parts, self.score, self.capacity = parts, score, capacity
        self.replay_prob = 0.0 if score == "uniform" else replay_prob
        self.temperature = temperature
        self.total = parts.es.generations
        self.members = [{"member": 0, "seed": parts.seed}]

    def spec(self) -> dict:
        from rlx import config as config_lib

        p = self.parts
        es = {k: v for k, v in config_lib.to_dict(p.es).items() if k != "generations"}
        return {"kind": "groove", "score": self.score, "es": es, "levels_per_generation": p.L,
                "capacity": self.capacity, "replay_prob": self.replay_prob, "temperature": self.temperature,
                "distribution": config_lib.to_dict(p.dist) if dataclasses.is_dataclass(p.dist) else repr(p.dist)}  # fmt: skip

    def check(self) -> None:
        pass

    def start(self, timings: dict) -> CurriculumState:
        trainer = self.parts.trainer
        # σ as the schedule's array and no weakly typed leaves from the start, so ask/tell compile
        # once, not again at generation 1 (tell returns strongly typed arrays).
        es = trainer.init_state()
        es = jax.tree.map(lambda x: jax.lax.convert_element_type(x, x.dtype) if hasattr(x, "dtype") else x,
                          es.replace(std=jnp.float32(trainer.sigma_schedule(0))))  # fmt: skip
        return CurriculumState(es, init_buffer(self.capacity, self.parts.level_template), jnp.int32(0))

    def advance(self, state: CurriculumState, g: int, k: int, timings: dict):
        p, L = self.parts, self.parts.L
        trainer, buf = p.trainer, state.buffer
        strategy, params = trainer.strategy, trainer.strategy.default_params
        t0 = time.perf_counter()
        k_ask, k_inner, k_tell = trainer.generation_keys(g)
        k_lv, k_ant = jax.random.split(jax.random.fold_in(p.key, g), 2)
        levels, idx = p.sample(k_lv, buf, p.dist, L, self.replay_prob, self.temperature)
        # Replayed levels keep the antagonist numbers computed when they were first seen.
        old = np.asarray(idx) >= 0
        safe = jnp.asarray(np.where(old, np.asarray(idx), 0))
        cached = Antagonist(buf.antagonist[safe], buf.pvl[safe], buf.maxmc[safe])
        ant = p.antagonist(jax.random.split(k_ant, L), levels, jnp.asarray(~old), cached)
        runs = int(state.antagonist_runs) + int((~old).sum())
        thetas, es = strategy.ask(k_ask, state.es, params)
        out = p.evaluate(trainer.inner_keys(k_inner), thetas, levels)  # [P, 3, L]
        fit = out[:, 0].mean(-1)  # NaN if any of the candidate's runs diverged
        shaped = np.where(np.isfinite(fit), fit, -np.inf)
        es, _ = strategy.tell(k_tell, thetas, -shaped, es, params)
        es = es.replace(std=jnp.float32(trainer.sigma_schedule(g + 1)))
        # The current rule's return on each level: the population average (the ± pairs
        # straddle the ES mean, so this estimates the mean's return without another run).
        agent_ret = np.nanmean(out[:, 1], 0)
        reg = np.asarray(regret(ant.ret, agent_ret))
        new_score = {"regret": reg, "pvl": ant.pvl, "maxmc": ant.maxmc, "uniform": reg}[self.score]
        buf = p.update(buf, idx, levels, jnp.asarray(new_score, jnp.float32), ant.ret, ant.pvl, ant.maxmc)
        opt = out[0, 2]
        drawn = dict(replayed=old, optimal_return=opt, lifetime=levels.lifetime,
                     episode_length=levels.max_steps_in_episode, size=levels.size, num_objects=levels.num_objects,
                     regret=reg)  # fmt: skip
        row = dict(fitness_mean=float(np.nanmean(fit)), fitness_max=float(np.nanmax(fit)),
                   regret_mean=float(np.mean(reg)), replayed=float(old.mean()), optimal_return=float(np.mean(opt)),
                   lifetime=float(np.mean(levels.lifetime)), episode_length=float(np.mean(levels.max_steps_in_episode)),
                   antagonist_runs=runs, seconds=time.perf_counter() - t0)  # fmt: skip
        metrics = {n: np.asarray([[v]]) for n, v in row.items()}
        metrics.update({f"drawn_{n}": np.asarray(v, float).reshape(1, 1, L) for n, v in drawn.items()})
        return CurriculumState(es, buf, jnp.int32(runs)), metrics

    def result(self, state: CurriculumState, out_dir: str | None, metrics: dict, first: int) -> GrooveResult:
        """The curriculum's GrooveResult: history and drawn levels from metrics.csv when the
        run has a directory (earlier calls' generations included), else from `metrics`."""
        import os

        from rlx.logging import read_metrics

        if out_dir:
            columns = read_metrics(os.path.join(out_dir, "metrics.csv"))
            columns = {n: v[:, None] if n.startswith("drawn_") and v.ndim == 1 else v for n, v in columns.items()}
        else:
            columns = {"generation": np.arange(first, self.total, dtype=float), **{n: v[0] for n, v in metrics.items()}}
        history = {n: np.asarray(columns[n]) for n in ("generation", *HISTORY)}
        generations = np.asarray(columns["generation"])
        L = self.parts.L
        drawn = {"generation": np.repeat(generations, L).astype(float)}
        drawn.update({n: np.asarray(columns[f"drawn_{n}"], float).reshape(-1) for n in DRAWN})
        return GrooveResult(self.parts.trainer.strategy.get_mean(state.es), history, drawn, state.buffer, None)


def _held_out_test(parts: _Parts, results: dict, scores: tuple, init: Any, held_out: mg.Level) -> None:
    """Every contender on the same held-out levels with the same keys, packed into the
    population's slots (slot i holds contender i mod C); fills `held_out` in `results`."""
    L, P, es = parts.L, parts.es.population_size, parts.es
    names = [*scores, "init"]
    params = [*(results[k].mean for k in scores), init]
    C = len(names)
    slots = [i % C for i in range(-(-C // P) * P)]
    sums = np.zeros((C, held_out.size.shape[0]))
    for start in range(0, len(slots), P):
        group = slots[start:start + P]
        thetas = jax.tree.map(lambda *x: jnp.stack(x), *[params[c] for c in group])
        for i in range(0, held_out.size.shape[0], L):
            lv = jax.tree.map(lambda x: x[i:i + L], held_out)
            k = jax.random.fold_in(parts.key, 10**6 + i)
            out = parts.evaluate(jnp.stack([jax.random.split(k, es.seeds)] * P), thetas, lv)[:, 0]  # [P, L]
            for j, c in enumerate(group):
                sums[c, i:i + L] += out[j]
    counts = np.bincount(slots, minlength=C)
    for c, name in enumerate(names):
        test = sums[c] / counts[c]
        results[name] = (results[name]._replace(held_out=test) if name in results
                         else GrooveResult(init, {}, {}, None, test))  # fmt: skip
