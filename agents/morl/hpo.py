"""Hyperparameter optimisation for multi-objective RL (Felten et al. 2023).

A trial is a setting of MO-PPO's traced hyperparameters. Its score is the mean,
over training seeds, of the hypervolume (with the env's pinned reference point) of
the front found by a linear-scalarisation MO-PPO population over a weight lattice,
evaluated deterministically on discounted returns. Expected utility is reported
beside it.

Because the searched fields are traced, a whole batch of trials x seeds x
preferences is one population: one compiled program trains and evaluates it, and
every later batch reuses it. The outer loop proposes batches: `random_search`
(the baseline) or `optuna_search` (Bayesian optimisation with optuna's TPE,
`constant_liar` so the trials of one batch spread out). Both see the same budget
and, for the same trial index, the same training keys (common random numbers).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from rlx import population as pop_lib
from rlx.agents.morl import indicators as ind
from rlx.agents.morl import moppo
from rlx.pareto import simplex_lattice
from rlx.config import is_static, stack
from rlx.evaluation import evaluate
from rlx.train import make_train, over_population, resolve_population_mode


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched hyperparameter: uniform on [low, high], or log-uniform with `log`."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self):
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"Param: need finite low < high, got [{self.low}, {self.high}].")
        if self.log and self.low <= 0:
            raise ValueError(f"Param: a log-uniform range needs low > 0, got {self.low}.")

    def sample(self, rng: np.random.Generator) -> float:
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))


def check_space(cfg: moppo.MOPPOConfig, space: dict[str, Param]) -> None:
    """Raise unless every searched name is a traced field of `cfg` (not the preference)."""
    if not space:
        raise ValueError("search space is empty: give at least one {name: Param(low, high)}.")
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    for name, p in space.items():
        if name not in fields:
            raise ValueError(f"search space: {type(cfg).__name__} has no field {name!r}.")
        if is_static(fields[name]):
            raise ValueError(
                f"search space: {name} is a static field (it shapes the compiled program); only traced "
                "fields can vary inside one population."
            )
        if name in ("weights", "barrier_threshold"):
            raise ValueError(f"search space: {name} is set by the MORL method, not searched.")
        if not isinstance(p, Param):
            raise ValueError(f"search space: {name} must be a Param(low, high, log), got {p!r}.")
        cfg.replace(**{name: p.low}), cfg.replace(**{name: p.high})  # the field's own bounds


class TrialEvaluator:
    """Scores batches of `batch_size` trials; compiled once, reused for every batch.

    Each trial trains `len(weights) x seeds` MO-PPO members for `cfg.num_updates`
    updates, evaluates them, and scores the mean over seeds of the hypervolume of each
    seed's front.
    """

    def __init__(
        self, env, env_params, cfg: moppo.MOPPOConfig, space: dict[str, Param], *, batch_size: int,
        seeds: int = 3, divisions: int = 5, eval_episodes: int = 1, devices: int | None = None,
        population_mode: str = "auto",
    ):  # fmt: skip
        self.d = moppo.check_against_env(env, cfg)
        check_space(cfg, space)
        if batch_size < 1 or seeds < 1:
            raise ValueError(f"batch_size and seeds must be >= 1, got {batch_size}, {seeds}.")
        self.env, self.env_params, self.cfg, self.space = env, env_params, cfg, space
        self.spec = env.mo_spec
        self.weights = simplex_lattice(self.d, divisions=divisions)
        self.batch_size, self.seeds = batch_size, seeds
        self.members_per_trial = len(self.weights) * seeds
        size = batch_size * self.members_per_trial
        ndev = pop_lib.default_devices(size) if devices is None else int(devices)
        pop_lib.check_devices(size, ndev)
        self.mesh = pop_lib.make_mesh(ndev)
        self.agent = moppo.make_agent(env, cfg)
        train = make_train(self.agent, cfg)
        agent, spec = self.agent, self.spec

        def member(key, c, env_params):
            state, metrics = train(key, c, env_params)
            out = evaluate(agent, agent.policy_params(state), c, env, env_params,
                           jax.random.fold_in(key, 7), eval_episodes, gamma=spec.gamma)  # fmt: skip
            return out["discounted_return"].mean(0), out["return"].mean(0)

        self._fn = jax.jit(over_population(member, self.mesh, resolve_population_mode(population_mode)))
        self.env_steps_per_batch = size * cfg.num_updates * cfg.num_envs * cfg.num_steps
        self.compile_s = 0.0

    def keys(self) -> jax.Array:
        """Keys `[B * S * M]`: member (trial i, seed s, preference m) uses fold_in(key(s), m),
        the same for every trial and batch, so trials differ only in their hyperparameters."""
        m = len(self.weights)
        idx = np.arange(self.batch_size * self.members_per_trial)
        seed, pref = (idx // m) % self.seeds, idx % m
        return jax.vmap(lambda s, p: jax.random.fold_in(jax.random.key(s), p))(jnp.asarray(seed), jnp.asarray(pref))

    def __call__(self, trials: list[dict[str, float]], first_trial: int = 0) -> list[dict]:
        """Train and score `trials` (at most `batch_size`; a short batch is padded with
        copies of its last trial, which are not reported). One record per trial."""
        if not 1 <= len(trials) <= self.batch_size:
            raise ValueError(f"need 1..{self.batch_size} trials per batch, got {len(trials)}.")
        padded = list(trials) + [trials[-1]] * (self.batch_size - len(trials))
        configs = []
        for t in padded:
            c = self.cfg.replace(**t)
            for _ in range(self.seeds):
                for w in self.weights:
                    configs.append(c.replace(weights=w.astype(np.float32)))
        cfgs = pop_lib.shard(stack(configs), self.mesh)
        keys = pop_lib.shard(self.keys(), self.mesh)
        t0 = time.perf_counter()
        if not hasattr(self, "_compiled"):
            self._compiled = self._fn.lower(keys, cfgs, self.env_params).compile()
            self.compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
        disc, undisc = jax.device_get(self._compiled(keys, cfgs, self.env_params))
        run_s = time.perf_counter() - t0
        m = len(self.weights)
        disc = np.asarray(disc, np.float64).reshape(self.batch_size, self.seeds, m, self.d)
        records = []
        for i, t in enumerate(trials):
            hv = [ind.hypervolume(disc[i, s], self.spec.ref_point) for s in range(self.seeds)]
            eu = [ind.expected_utility(disc[i, s], self.spec.weights) for s in range(self.seeds)]
            records.append(dict(trial=first_trial + i, **t, hypervolume=float(np.mean(hv)),
                                hypervolume_std=float(np.std(hv)), expected_utility=float(np.mean(eu)),
                                batch_run_s=run_s))  # fmt: skip
        return records


def _with_best(records: list[dict]) -> list[dict]:
    best = -np.inf
    for r in records:
        best = max(best, r["hypervolume"])
        r["best_hypervolume"] = best
    return records


def random_search(evaluator: TrialEvaluator, num_trials: int, seed: int = 0,
                  on_batch: Callable[[list[dict]], None] | None = None) -> list[dict]:  # fmt: skip
    """The baseline: trials drawn independently from the space, in batches."""
    rng = np.random.default_rng(seed)
    records: list[dict] = []
    while len(records) < num_trials:
        n = min(evaluator.batch_size, num_trials - len(records))
        trials = [{k: p.sample(rng) for k, p in evaluator.space.items()} for _ in range(n)]
        batch = evaluator(trials, len(records))
        records += batch
        if on_batch:
            on_batch(batch)
    return _with_best(records)


def optuna_search(evaluator: TrialEvaluator, num_trials: int, seed: int = 0, n_startup_trials: int | None = None,
                  on_batch: Callable[[list[dict]], None] | None = None) -> list[dict]:  # fmt: skip
    """Bayesian optimisation with optuna's TPE (multivariate, constant liar), asked for a
    batch of trials at a time and told their mean hypervolume. The first
    `n_startup_trials` (default: one batch) are random, as in random search."""
    import optuna  # an optional dependency, imported only here

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    startup = evaluator.batch_size if n_startup_trials is None else n_startup_trials
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, constant_liar=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dists = {k: optuna.distributions.FloatDistribution(p.low, p.high, log=p.log) for k, p in evaluator.space.items()}
    records: list[dict] = []
    while len(records) < num_trials:
        n = min(evaluator.batch_size, num_trials - len(records))
        asked = [study.ask(dists) for _ in range(n)]
        trials = [dict(t.params) for t in asked]
        batch = evaluator(trials, len(records))
        for t, r in zip(asked, batch):
            study.tell(t, r["hypervolume"])
        records += batch
        if on_batch:
            on_batch(batch)
    return _with_best(records)
