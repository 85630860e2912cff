"""C-MORL: Pareto-front discovery by constrained policy optimisation (Liu et al., ICLR 2025).

Stage 1 (Pareto initialisation) trains one MO-PPO policy per preference of a simplex
lattice, as one population (`rlx.agents.morl.moppo.preference_population`).

Stage 2 (Pareto extension) repeats for `rounds`:
1. every evaluated policy is offered to a Pareto archive (non-dominated points above
   the reference point, at most `archive_capacity`, pruned by crowding distance);
2. the `num_select` archived policies with the largest NSGA-II crowding distance are
   selected, skipping policies selected in earlier rounds;
3. for every (selected policy π_r, objective l), `constrained_updates` MO-PPO updates
   ascend  J_l(π) + (1/t) Σ_{j≠l} log(J_j(π) − c_j)  with c_j = J_j(π_r) − (1 − β)|J_j(π_r)|
   (the paper's β J_j(π_r) for positive returns; with negative returns, such as Deep
   Sea Treasure's time penalty, β J_j would demand an improvement). All pairs run as
   one population program, sharded over the devices;
4. every intermediate policy is evaluated (deterministically, discounted with the
   env's `mo_spec.gamma`) and offered to the archive.

A preference w is then served by `assign(result, w)`: the archived policy maximising w·J.

Departures from the official code, which follows neither the paper nor itself here
(morl.md): the barrier runs over the objective axis (the official code slices the
batch axis); the step count includes every parallel env (the official code
undercounts it by the number of envs), and evaluation steps are counted apart; the
constrained objective is the paper's interior-point one (the official code's CPO
variant is never called). J(π) in the barrier is the vector critic's estimate at
fresh initial states (in training-γ units), for π_r and for the policy being updated
alike, so the constraint levels and the estimates are comparable.
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
from rlx.pareto import (
    archive_front,
    archive_init,
    archive_insert_batch,
    check_weights,
    crowding_distance,
    simplex_lattice,
)
from rlx.config import config, stack, static
from rlx.evaluation import evaluate
from rlx.population import Population
from rlx.train import Runner, over_population, resolve_population_mode


@config
class CMORLConfig:
    """C-MORL's outer settings (the learner's are the `MOPPOConfig`). Defaults are the
    paper's, except the budget, which is per env."""

    init_divisions: int = static(5, "stage-1 lattice divisions: C(H+d-1, d-1) preferences (5 in 2-D: 6)", ge=1)
    init_updates: int = static(100, "MO-PPO updates per stage-1 policy", ge=1)
    rounds: int = static(2, "stage-2 rounds", ge=0)
    num_select: int = static(5, "policies selected per round (N)", ge=1)
    constrained_updates: int = static(20, "constrained MO-PPO updates per (policy, objective) (K)", ge=1)
    beta: float = static(0.9, "constraint relaxation β: keep J_j >= J_j(π_r) - (1-β)|J_j(π_r)|", gt=0, le=1)
    barrier_t: float = static(20.0, "log-barrier coefficient t", gt=0)
    archive_capacity: int = static(200, "Pareto archive size", ge=1)
    eval_episodes: int = static(1, "deterministic evaluation episodes per policy", ge=1)
    eval_every: int = static(1, "evaluate every k-th constrained update (the last always)", ge=1)
    population_mode: str = static("auto", "rlx.train population mode", choices=("auto", "vmap", "map"))


@dataclasses.dataclass
class CMORLResult:
    """Everything a C-MORL run found, on the host.

    points: `[n, d]` discounted evaluation returns of the archived policies;
    undiscounted: `[n, d]` their undiscounted returns; ids: `[n]` policy ids;
    policies: id -> policy params (`ppo.PPOParams` of numpy arrays); history: one
    row per stage (stage 1 and every round) with cumulative env steps and indicators.
    """

    points: np.ndarray
    undiscounted: np.ndarray
    ids: np.ndarray
    policies: dict[int, Any]
    history: list[dict]
    env_steps: int  # training env steps, every parallel env counted
    eval_steps: int  # evaluation env steps, counted apart
    timings: dict[str, float]
    all_points: np.ndarray  # [m, d] every evaluated policy, archived or not


def _spec(env):
    spec = getattr(env, "mo_spec", None)
    if spec is None:
        raise ValueError(f"C-MORL needs an env with an `mo_spec` (reference point, weights, gamma); {env.name} has none.")
    return spec


def _devices(size: int, devices: int | None) -> int:
    d = pop_lib.default_devices(size) if devices is None else int(devices)
    pop_lib.check_devices(size, d)
    return d


def evaluator(agent, env, episodes: int, gamma: float):
    """`fn(params[P], cfg[P], env_params, keys[P]) -> (discounted [P, d], undiscounted [P, d], steps [P])`."""

    def one(params, c, env_params, key):
        out = evaluate(agent, params, c, env, env_params, key, episodes, gamma=gamma)
        return out["discounted_return"].mean(0), out["return"].mean(0), out["length"].sum()

    return jax.jit(jax.vmap(one, (0, 0, None, 0)))


def constraint_levels(j_r: np.ndarray, objective: int, beta: float) -> np.ndarray:
    """c: `[d]`: J_j(π_r) − (1 − β)|J_j(π_r)| for j ≠ objective, −inf for the objective itself."""
    c = j_r - (1.0 - beta) * np.abs(j_r)
    c[objective] = -np.inf
    return c


def select_by_crowding(points: np.ndarray, ids: np.ndarray, exclude: set[int], n: int) -> list[int]:
    """The ids of the `n` archived points with the largest crowding distance, skipping
    `exclude`; ties (e.g. the +inf boundary points) keep archive order."""
    if points.shape[0] == 0:
        return []
    cd = np.asarray(crowding_distance(np.asarray(points, np.float64)))
    order = sorted(range(len(ids)), key=lambda i: -cd[i])  # stable: ties keep archive order
    return [int(ids[i]) for i in order if int(ids[i]) not in exclude][:n]


class _Archive:
    """The jittable `ParetoArchive` plus a host store of the archived policies."""

    def __init__(self, capacity: int, d: int, ref_point: np.ndarray):
        self.state = archive_init(capacity, d, jnp.float32)
        self.ref = jnp.asarray(ref_point, jnp.float32)
        self.policies: dict[int, Any] = {}
        self.undiscounted: dict[int, np.ndarray] = {}
        self.next_id = 0
        self._insert = jax.jit(archive_insert_batch)

    def offer(self, points: np.ndarray, undiscounted: np.ndarray, params: Any) -> None:
        """points, undiscounted: `[n, d]`; params: the n policies' params, stacked on axis 0."""
        n = points.shape[0]
        ids = np.arange(self.next_id, self.next_id + n, dtype=np.int32)
        self.next_id += n
        self.state = self._insert(self.state, jnp.asarray(points, jnp.float32), jnp.asarray(ids), self.ref)
        _, kept = archive_front(self.state)
        keep = set(int(i) for i in kept)
        host = jax.device_get(params)
        for k, i in enumerate(ids):
            if int(i) in keep:
                self.policies[int(i)] = jax.tree.map(lambda x: np.asarray(x[k]), host)
                self.undiscounted[int(i)] = np.asarray(undiscounted[k])
        # Only archived policies are kept: memory stays at `capacity` policies.
        self.policies = {i: p for i, p in self.policies.items() if i in keep}
        self.undiscounted = {i: u for i, u in self.undiscounted.items() if i in keep}

    def front(self) -> tuple[np.ndarray, np.ndarray]:
        points, ids = archive_front(self.state)
        return np.asarray(points, np.float64), np.asarray(ids)


def indicators(points: np.ndarray, spec) -> dict[str, float]:
    """HV, EU, sparsity and cardinality of `points: [n, d]` under the env's pinned spec."""
    if points.shape[0] == 0:
        return dict(hypervolume=0.0, expected_utility=float("nan"), sparsity=float("nan"), cardinality=0)
    return dict(
        hypervolume=ind.hypervolume(points, spec.ref_point),
        expected_utility=ind.expected_utility(points, spec.weights),
        sparsity=ind.sparsity(points),
        cardinality=ind.cardinality(points),
    )


def stage1_population(cfg: moppo.MOPPOConfig, d: int, divisions: int, updates: int, seed: int) -> Population:
    """The stage-1 preference population: one member per lattice point, each with its own key."""
    batch = cfg.num_envs * cfg.num_steps
    base = cfg.replace(total_steps=updates * batch, barrier_threshold=None)
    weights = simplex_lattice(d, divisions=divisions)
    pop = moppo.preference_population(base, weights, seeds=[seed])
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.arange(len(weights)))
    return pop._replace(keys=keys)


def train_linear(
    env, env_params, cfg: moppo.MOPPOConfig, ccfg: CMORLConfig, seed: int = 0, updates: int | None = None,
    devices: int | None = None,
) -> tuple[Any, Any, Population, dict]:
    """Stage 1 alone: the linear-scalarisation population, trained `updates` MO-PPO updates
    per member (default `ccfg.init_updates`). Returns `(agent, state[P], population, timings)`."""
    d = moppo.check_against_env(env, cfg.replace(weights=np.full(env.reward_dim, 1.0 / env.reward_dim)))
    pop = stage1_population(cfg, d, ccfg.init_divisions, updates or ccfg.init_updates, seed)
    template = jax.tree.map(lambda x: x[0], pop.cfg)
    agent = moppo.make_agent(env, template)
    size = len(pop.members)
    runner = Runner(
        agent, pop, env_params, None, progress=False, devices=_devices(size, devices),
        population_mode=ccfg.population_mode, description="C-MORL stage 1",
    )  # fmt: skip
    result = runner.run()
    return agent, result.state, pop, result.timings


def run(
    env, env_params, cfg: moppo.MOPPOConfig, ccfg: CMORLConfig, seed: int = 0, devices: int | None = None,
    on_round: Callable[[dict], None] | None = None,
) -> CMORLResult:
    """Run C-MORL on `env` (a vector-reward env with an `mo_spec`) from one seed.

    `cfg` is the MO-PPO learner (its `weights` and `barrier_threshold` are set here);
    `on_round(history_row)` is called after stage 1 and after every round.
    """
    d = moppo.check_against_env(env, cfg)
    spec = _spec(env)
    batch = cfg.num_envs * cfg.num_steps
    timings = {"stage1_s": 0.0, "stage1_compile_s": 0.0, "stage2_s": 0.0, "stage2_compile_s": 0.0, "eval_s": 0.0}
    history: list[dict] = []
    all_points: list[np.ndarray] = []
    eval_steps = 0

    # -- stage 1 ---------------------------------------------------------------------
    t0 = time.perf_counter()
    agent1, state1, pop1, t1 = train_linear(env, env_params, cfg, ccfg, seed, devices=devices)
    # Run time is the Runner's (its chunks, host I/O between them included); all the rest
    # is set-up: the agent's construction (an env trace), the init, the compiles.
    timings["stage1_s"] = t1["run_s"]
    timings["stage1_compile_s"] = time.perf_counter() - t0 - t1["run_s"]
    size1 = len(pop1.members)
    env_steps = size1 * ccfg.init_updates * batch
    evaluate1 = evaluator(agent1, env, ccfg.eval_episodes, spec.gamma)
    t = time.perf_counter()
    eval_keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), 1_000_003), size1)
    params1 = agent1.policy_params(state1)
    disc, undisc, steps = jax.device_get(evaluate1(params1, pop1.cfg, env_params, eval_keys))
    timings["eval_s"] += time.perf_counter() - t
    eval_steps += int(np.sum(steps))
    archive = _Archive(ccfg.archive_capacity, d, spec.ref_point)
    archive.offer(disc, undisc, params1)
    all_points.append(np.asarray(disc, np.float64))
    row = dict(stage="stage 1", round=0, policies_trained=size1, env_steps=env_steps, eval_steps=eval_steps,
               **indicators(archive.front()[0], spec))  # fmt: skip
    history.append(row)
    if on_round:
        on_round(row)

    # -- stage 2 ---------------------------------------------------------------------
    template = cfg.replace(
        weights=np.eye(d, dtype=np.float32)[0], barrier_threshold=np.zeros(d, np.float32),
        barrier_t=float(ccfg.barrier_t), total_steps=ccfg.constrained_updates * batch, anneal_lr=False,
    )  # fmt: skip
    agent2 = moppo.make_agent(env, template)
    estimate = moppo.value_estimator(env, template)
    estimate_many = jax.jit(jax.vmap(estimate, (0, None, None, 0)))
    evaluate2 = evaluator(agent2, env, ccfg.eval_episodes, spec.gamma)
    K, every = ccfg.constrained_updates, ccfg.eval_every
    eval_at = np.array([k for k in range(K) if (k + 1) % every == 0 or k == K - 1])
    compiled: dict[int, Any] = {}
    selected: set[int] = set()

    def member(carry, c, env_params):
        """One (π_r, objective) pair: K constrained updates from π_r's params, with the
        params after each evaluated update as outputs: leaves `[E, ...]`."""
        params, key = carry
        state = agent2.init(key, c, env_params)
        state = state.replace(params=params)  # fresh optimiser and envs, π_r's networks

        def body(s, _):
            s, m = agent2.update(s, c, env_params)
            return s, (agent2.policy_params(s), m["barrier_weights"])

        _, (trace, weights) = jax.lax.scan(body, state, None, length=K)
        return jax.tree.map(lambda x: x[eval_at], trace), weights

    for r in range(ccfg.rounds):
        front, ids = archive.front()
        chosen = select_by_crowding(front, ids, selected, ccfg.num_select)
        if not chosen:
            break
        selected.update(chosen)
        n = len(chosen) * d
        start = jax.tree.map(lambda *xs: np.stack(xs), *[archive.policies[i] for i in chosen])
        j_r = np.asarray(
            estimate_many(start, template, env_params, jax.random.split(jax.random.key(seed + 7919 * (r + 1)), len(chosen)))
        )
        configs, params_list = [], []
        for k, pid in enumerate(chosen):
            for obj in range(d):
                configs.append(template.replace(
                    weights=np.eye(d, dtype=np.float32)[obj],
                    barrier_threshold=constraint_levels(j_r[k].astype(np.float64), obj, ccfg.beta).astype(np.float32),
                ))  # fmt: skip
                params_list.append(jax.tree.map(lambda x: x[k], start))
        cfgs = stack(configs)
        params = jax.tree.map(lambda *xs: np.stack(xs), *params_list)
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), 10_000 * (r + 1) + i))(jnp.arange(n))
        ndev = _devices(n, devices)
        mesh = pop_lib.make_mesh(ndev)
        # Lower on the sharded arguments: with "vmap" (no shard_map) the compiled program
        # takes its input shardings from the arguments it was lowered with.
        t = time.perf_counter()
        sharded = pop_lib.shard((params, keys), mesh), pop_lib.shard(cfgs, mesh)
        shard_s = time.perf_counter() - t
        if n not in compiled:
            fn = jax.jit(over_population(member, mesh, resolve_population_mode(ccfg.population_mode)))
            tc = time.perf_counter()
            compiled[n] = fn.lower(*sharded, env_params).compile()
            timings["stage2_compile_s"] += time.perf_counter() - tc
        t = time.perf_counter()
        trace, _ = compiled[n](*sharded, env_params)
        jax.block_until_ready(trace)
        timings["stage2_s"] += shard_s + time.perf_counter() - t
        env_steps += n * K * batch
        # Evaluate every intermediate policy: [n, E] -> one batch of n * E.
        E = len(eval_at)
        flat = jax.tree.map(lambda x: x.reshape((n * E,) + x.shape[2:]), trace)
        flat_cfg = jax.tree.map(lambda x: np.repeat(np.asarray(x), E, axis=0), cfgs)
        t = time.perf_counter()
        ekeys = jax.random.split(jax.random.fold_in(jax.random.key(seed), 2_000_003 + r), n * E)
        disc, undisc, steps = jax.device_get(evaluate2(flat, flat_cfg, env_params, ekeys))
        timings["eval_s"] += time.perf_counter() - t
        eval_steps += int(np.sum(steps))
        archive.offer(disc, undisc, flat)
        all_points.append(np.asarray(disc, np.float64))
        row = dict(stage=f"round {r + 1}", round=r + 1, policies_trained=n, env_steps=env_steps,
                   eval_steps=eval_steps, selected=list(chosen), **indicators(archive.front()[0], spec))  # fmt: skip
        history.append(row)
        if on_round:
            on_round(row)

    points, ids = archive.front()
    return CMORLResult(
        points=points,
        undiscounted=np.stack([archive.undiscounted[int(i)] for i in ids]) if len(ids) else np.zeros((0, d)),
        ids=ids,
        policies={int(i): archive.policies[int(i)] for i in ids},
        history=history,
        env_steps=env_steps,
        eval_steps=eval_steps,
        timings=timings,
        all_points=np.concatenate(all_points, 0),
    )


def stage2_env_steps(ccfg: CMORLConfig, cfg: moppo.MOPPOConfig, d: int) -> int:
    """The most training env steps stage 2 can take: rounds x N x d x K x batch."""
    return ccfg.rounds * ccfg.num_select * d * ccfg.constrained_updates * cfg.num_envs * cfg.num_steps


def equal_budget_updates(ccfg: CMORLConfig, cfg: moppo.MOPPOConfig, d: int, env_steps: int) -> int:
    """Updates per stage-1 member for the linear baseline to match `env_steps` in all."""
    members = math.comb(ccfg.init_divisions + d - 1, d - 1)
    return -(-env_steps // (members * cfg.num_envs * cfg.num_steps))


def assign(result: CMORLResult, weights) -> tuple[int, Any]:
    """Policy assignment for a new preference `weights: [d]`: the archived policy
    maximising w·J. Returns `(policy id, params)`."""
    w = np.asarray(check_weights(np.asarray(weights, np.float64), result.points.shape[1]))
    if w.shape != (result.points.shape[1],):
        raise ValueError(f"assign: one weight vector of shape ({result.points.shape[1]},) expected, got {w.shape}.")
    if result.points.shape[0] == 0:
        raise ValueError("assign: the archive is empty; run C-MORL first.")
    i = int(np.argmax(result.points @ w))
    pid = int(result.ids[i])
    return pid, result.policies[pid]


# ---------------------------------------------------------------------------------
# Saving and restoring archives (orbax)
# ---------------------------------------------------------------------------------


def save_archive(path: str, result: CMORLResult) -> None:
    """Write the archive (points, ids, and every archived policy's params) with orbax."""
    import os

    import orbax.checkpoint as ocp

    ids = [int(i) for i in result.ids]
    params = jax.tree.map(lambda *xs: np.stack(xs), *[result.policies[i] for i in ids]) if ids else {}
    tree = {
        "points": np.asarray(result.points), "undiscounted": np.asarray(result.undiscounted),
        "ids": np.asarray(result.ids, np.int32), "params": params,
    }  # fmt: skip
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(os.path.abspath(path), tree)


def load_archive(path: str, like_params: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, Any]]:
    """Read an archive written by `save_archive`: `(points, undiscounted, ids, policies)`.
    `like_params` is one policy's params (e.g. `agent.policy_params(agent.init(...))`),
    giving the structure to restore into."""
    import os

    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as ckpt:
        meta = ckpt.metadata(os.path.abspath(path))
        tree = meta.item_metadata.tree if hasattr(meta, "item_metadata") else meta
        n = int(tree["ids"].shape[0])
        d = int(tree["points"].shape[1])
        abstract = {
            "points": jax.ShapeDtypeStruct((n, d), np.float64), "undiscounted": jax.ShapeDtypeStruct((n, d), np.float64),
            "ids": jax.ShapeDtypeStruct((n,), np.int32),
            "params": jax.tree.map(lambda x: jax.ShapeDtypeStruct((n,) + np.shape(x), np.asarray(x).dtype), like_params),
        }  # fmt: skip
        out = ckpt.restore(os.path.abspath(path), abstract)
    ids = np.asarray(out["ids"])
    policies = {int(i): jax.tree.map(lambda x: np.asarray(x[k]), out["params"]) for k, i in enumerate(ids)}
    return np.asarray(out["points"]), np.asarray(out["undiscounted"]), ids, policies
