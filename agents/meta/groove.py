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
    lowest-scoring entry (empty slots first) when they score higher than it."""
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
    """Algorithmic regret: A2C's return minus the LPG agent's, both exact."""
    return antagonist_return - agent_return


class GrooveResult(NamedTuple):
    mean: Any  # final ES mean (meta-network parameters)
    history: dict  # per generation: fitness, regret and level statistics
    drawn: dict  # every drawn level's statistics, concatenated over generations
    buffer: LevelBuffer
    held_out: np.ndarray | None  # [H] final mean's return / optimum on the held-out levels


def run(env: mg.MetaGrid, cfg: lpg.LPGConfig, a2c_cfg: lpg.LPGConfig, dist: mg.GridDistribution, init: Any,
        es: Any, levels_per_generation: int, scores: tuple = ("regret", "uniform"), capacity: int = 4000,
        replay_prob: float = 0.5, temperature: float = 1.0, seed: int = 0, progress: bool = False,
        held_out: mg.Level | None = None) -> dict:  # fmt: skip
    """Meta-train LPG with OpenES (part 1's `MetaTrainer`: its strategy, schedules, keys and
    device mesh) once per curriculum in `scores` (each one of SCORES; "uniform" draws only
    fresh levels), all from the same start and ES keys. One compiled program, run by
    `population_fitness`, trains every candidate on every level and returns per-level
    numbers; it serves all curricula, the regret and the held-out test. `held_out` (a batch
    of levels, a multiple of `levels_per_generation`) scores each final ES mean, and `init`
    under key "init", by return / optimum.
    Returns `{score: GrooveResult}` (plus "init" with only `held_out` when given)."""
    from jax.sharding import NamedSharding, PartitionSpec

    from rlx.agents.meta.es import MetaTask, MetaTrainer, population_fitness

    for score in scores:
        if score not in SCORES:
            raise ValueError(f"groove.run: score = {score!r} is invalid: accepted values are {SCORES}.")
    if not 0.0 <= replay_prob <= 1.0:
        raise ValueError(f"groove.run: replay_prob = {replay_prob} is invalid: it must be in [0, 1].")
    L = levels_per_generation
    if held_out is not None and held_out.size.shape[0] % L:
        raise ValueError(f"groove.run: {held_out.size.shape[0]} held-out levels is not a multiple of "
                         f"levels_per_generation = {L}.")  # fmt: skip
    key = jax.random.key(seed)
    train = lpg.make_train(env, cfg)
    trainer = MetaTrainer([MetaTask("grid", train, cfg, None)], "lpg_params", init, es, progress=False)
    P = es.population_size

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

    pop = population_fitness(fit, trainer.mesh, trainer.chunk)
    split, whole = NamedSharding(trainer.mesh, PartitionSpec("pop")), NamedSharding(trainer.mesh, PartitionSpec())

    def evaluate(keys, thetas, levels):
        """[P, 3, L]: per candidate and level, return / optimum, return and optimum."""
        keys, thetas = jax.device_put((keys, thetas), split)
        return np.asarray(pop(keys, thetas, jax.device_put((cfg, levels), whole)))

    one = make_antagonist(env, a2c_cfg)

    @jax.jit
    def antagonist(keys, levels, fresh, cached):
        # lax.map + cond really skips replayed levels: A2C runs once per level, when it is new.
        def f(x):
            k, lv, new, old = x
            return jax.lax.cond(new, lambda: one(k, lv), lambda: old)

        return jax.lax.map(f, (keys, levels, fresh, cached))

    sample_fn = jax.jit(sample, static_argnums=(2, 3))
    update_fn = jax.jit(update)
    template = jax.eval_shape(lambda: mg.sample_level(key, dist))
    results = {}
    for score in scores:
        results[score] = _curriculum(score, trainer, evaluate, dist, L, key, antagonist, sample_fn, update_fn,
                                     init_buffer(capacity, template), replay_prob, temperature, es, progress)  # fmt: skip
    if held_out is not None:
        # Every contender on the same held-out levels with the same keys, packed into the
        # population's slots (slot i holds contender i mod C).
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
                k = jax.random.fold_in(key, 10**6 + i)
                out = evaluate(jnp.stack([jax.random.split(k, es.seeds)] * P), thetas, lv)[:, 0]  # [P, L]
                for j, c in enumerate(group):
                    sums[c, i:i + L] += out[j]
        counts = np.bincount(slots, minlength=C)
        for c, name in enumerate(names):
            test = sums[c] / counts[c]
            results[name] = (results[name]._replace(held_out=test) if name in results
                             else GrooveResult(init, {}, {}, None, test))  # fmt: skip
    return results


def _curriculum(score, trainer, evaluate, dist, L, key, antagonist, sample_fn, update_fn, buf, replay_prob,
                temperature, es, progress) -> GrooveResult:  # fmt: skip
    strategy, params = trainer.strategy, trainer.strategy.default_params
    # σ as the schedule's array and no weakly typed leaves from the start, so ask/tell compile
    # once, not again at generation 1 (tell returns strongly typed arrays).
    state = trainer.init_state()
    state = jax.tree.map(lambda x: jax.lax.convert_element_type(x, x.dtype) if hasattr(x, "dtype") else x,
                         state.replace(std=jnp.float32(trainer.sigma_schedule(0))))  # fmt: skip
    hist: dict[str, list] = {k: [] for k in ("generation", "fitness_mean", "fitness_max", "regret_mean", "replayed",
                                              "optimal_return", "lifetime", "episode_length", "antagonist_runs",
                                              "seconds")}  # fmt: skip
    drawn: dict[str, list] = {k: [] for k in ("generation", "replayed", "optimal_return", "lifetime",
                                              "episode_length", "size", "num_objects", "regret")}  # fmt: skip
    antagonist_runs = 0
    for g in range(es.generations):
        t0 = time.perf_counter()
        k_ask, k_inner, k_tell = trainer.generation_keys(g)
        k_lv, k_ant = jax.random.split(jax.random.fold_in(key, g), 2)
        rp = 0.0 if score == "uniform" else replay_prob
        levels, idx = sample_fn(k_lv, buf, dist, L, rp, temperature)
        # Replayed levels keep the antagonist numbers computed when they were first seen.
        old = np.asarray(idx) >= 0
        safe = jnp.asarray(np.where(old, np.asarray(idx), 0))
        cached = Antagonist(buf.antagonist[safe], buf.pvl[safe], buf.maxmc[safe])
        ant = antagonist(jax.random.split(k_ant, L), levels, jnp.asarray(~old), cached)
        antagonist_runs += int((~old).sum())
        thetas, state = strategy.ask(k_ask, state, params)
        out = evaluate(trainer.inner_keys(k_inner), thetas, levels)  # [P, 3, L]
        fit = out[:, 0].mean(-1)  # NaN if any of the candidate's runs diverged
        shaped = np.where(np.isfinite(fit), fit, -np.inf)
        state, _ = strategy.tell(k_tell, thetas, -shaped, state, params)
        state = state.replace(std=jnp.float32(trainer.sigma_schedule(g + 1)))
        # The current rule's return on each level: the population average (the ± pairs
        # straddle the ES mean, so this estimates the mean's return without another run).
        agent_ret = np.nanmean(out[:, 1], 0)
        reg = np.asarray(regret(ant.ret, agent_ret))
        new_score = {"regret": reg, "pvl": ant.pvl, "maxmc": ant.maxmc, "uniform": reg}[score]
        buf = update_fn(buf, idx, levels, jnp.asarray(new_score, jnp.float32), ant.ret, ant.pvl, ant.maxmc)
        opt = out[0, 2]
        for k, v in (("generation", np.full(L, g)), ("replayed", old), ("optimal_return", opt),
                     ("lifetime", levels.lifetime), ("episode_length", levels.max_steps_in_episode),
                     ("size", levels.size), ("num_objects", levels.num_objects), ("regret", reg)):  # fmt: skip
            drawn[k].append(np.asarray(v, float))
        row = dict(generation=g, fitness_mean=float(np.nanmean(fit)), fitness_max=float(np.nanmax(fit)),
                   regret_mean=float(np.mean(reg)), replayed=float(old.mean()), optimal_return=float(np.mean(opt)),
                   lifetime=float(np.mean(levels.lifetime)), episode_length=float(np.mean(levels.max_steps_in_episode)),
                   antagonist_runs=antagonist_runs, seconds=time.perf_counter() - t0)  # fmt: skip
        for k in hist:
            hist[k].append(row[k])
        if progress:
            print(f"groove[{score}] gen {g + 1}/{es.generations} fitness {row['fitness_mean']:.3f} "
                  f"regret {row['regret_mean']:.3f} replayed {row['replayed']:.2f} {row['seconds']:.1f} s", flush=True)  # fmt: skip
    return GrooveResult(strategy.get_mean(state), {k: np.asarray(v) for k, v in hist.items()},
                        {k: np.concatenate(v) for k, v in drawn.items()}, buf, None)  # fmt: skip
