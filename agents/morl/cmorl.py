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

Departures from the official code, which follows neither the paper nor itself here:
the barrier runs over the objective axis (the official code slices the
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
import os
import time
from typing import Any, Callable, NamedTuple

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
    """The ids of the `n` archived points (`points` `[N, d]`, `ids` `[N]`) with the largest
    crowding distance, skipping `exclude`; ties (e.g. the +inf boundary points) keep archive order."""
    if points.shape[0] == 0:
        return []
    cd = np.asarray(crowding_distance(np.asarray(points, np.float64)))
    order = sorted(range(len(ids)), key=lambda i: -cd[i])  # stable: ties keep archive order
    return [int(ids[i]) for i in order if int(ids[i]) not in exclude][:n]


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
    devices: int | None = None, out_dir: str | None = None,
) -> tuple[Any, Any, Population, dict]:
    """Stage 1 alone: the linear-scalarisation population, trained `updates` MO-PPO updates
    per member (default `ccfg.init_updates`). Returns `(agent, state[P], population, timings)`.
    With `out_dir` the Runner checkpoints there and continues whatever it finds."""
    d = moppo.check_against_env(env, cfg.replace(weights=np.full(env.reward_dim, 1.0 / env.reward_dim)))
    pop = stage1_population(cfg, d, ccfg.init_divisions, updates or ccfg.init_updates, seed)
    template = jax.tree.map(lambda x: x[0], pop.cfg)
    agent = moppo.make_agent(env, template)
    size = len(pop.members)
    runner = Runner(
        agent, pop, env_params, out_dir, progress=False, devices=_devices(size, devices),
        population_mode=ccfg.population_mode, description="C-MORL stage 1",
    )  # fmt: skip
    result = runner.run(resume=out_dir is not None)
    return agent, result.state, pop, result.timings


# Seeds of C-MORL's key streams, each folded with the run's seed; apart from one another.
STAGE1_EVAL_STREAM = 1_000_003  # stage-1 evaluation keys
ROUND_EVAL_STREAM = 2_000_003  # + (round - 1): stage-2 evaluation keys
ROUND_TRAIN_STREAM = 10_000  # x round + pair index: stage-2 training keys
ROUND_ESTIMATE_STRIDE = 7919  # seed + stride x round: keys of the J(π_r) estimates


class CMORLState(NamedTuple):
    """Everything C-MORL carries from one round to the next, as fixed-shape arrays (so it
    checkpoints and resumes): the Pareto archive (row payloads are policy ids), the archived
    policies' params and undiscounted returns by archive row (`bank`: leaves `[C, ...]`;
    `undiscounted`: `[C, d]`), the next policy id, the ids selected so far (`[R, N]`, -1
    padded), every evaluated point (`[M, d]`, the first `num_points` rows used) and each
    stage's evaluation steps (`[R + 1]`)."""

    archive: Any
    bank: Any
    undiscounted: jax.Array
    next_id: jax.Array
    selected: jax.Array
    points: jax.Array
    num_points: jax.Array
    eval_steps: jax.Array


class CMORL:
    """C-MORL as a program of the host loop (`rlx.hostloop`): step 0 is stage 1, step r is
    stage-2 round r. `run` below is the function to call."""

    step_name = "round"
    chunk = 1
    progress_keys = ("hypervolume", "cardinality")

    def __init__(self, env, env_params, cfg: moppo.MOPPOConfig, ccfg: CMORLConfig, seed: int = 0,
                 devices: int | None = None, out_dir: str | None = None):  # fmt: skip
        self.d = moppo.check_against_env(env, cfg)
        self.env, self.env_params, self.cfg, self.ccfg, self.seed = env, env_params, cfg, ccfg, seed
        self.devices, self.out_dir = devices, out_dir
        self.mo_spec = _spec(env)
        self.batch = cfg.num_envs * cfg.num_steps
        self.total = ccfg.rounds + 1
        self.members = [{"member": 0, "seed": seed}]
        self.size1 = math.comb(ccfg.init_divisions + self.d - 1, self.d - 1)
        d, K, every = self.d, ccfg.constrained_updates, ccfg.eval_every
        self.eval_at = np.array([k for k in range(K) if (k + 1) % every == 0 or k == K - 1])
        self.template = cfg.replace(
            weights=np.eye(d, dtype=np.float32)[0], barrier_threshold=np.zeros(d, np.float32),
            barrier_t=float(ccfg.barrier_t), total_steps=K * self.batch, anneal_lr=False,
        )  # fmt: skip
        self.agent2 = moppo.make_agent(env, self.template)
        self._compiled: dict[int, Any] = {}

    # -- the program -----------------------------------------------------------------------------
    def spec(self) -> dict:
        from rlx import config as config_lib

        return {"kind": "cmorl", "env": self.env.name, "seed": self.seed, "cmorl": config_lib.to_dict(self.ccfg),
                "learner": config_lib.to_dict(self.cfg), "devices": self.devices}  # fmt: skip

    def check(self) -> None:
        pass

    def start(self, timings: dict) -> CMORLState:
        for name in ("stage1_s", "stage1_compile_s", "stage2_s", "stage2_compile_s", "eval_s"):
            timings.setdefault(name, 0.0)
        ccfg = self.ccfg
        c = ccfg.archive_capacity
        policy = self.agent2.policy_params(jax.eval_shape(self.agent2.init, jax.random.key(0), self.template, self.env_params))
        most = self.size1 + ccfg.rounds * ccfg.num_select * self.d * len(self.eval_at)
        return CMORLState(
            archive=archive_init(c, self.d, jnp.float32),
            bank=jax.tree.map(lambda x: np.zeros((c,) + x.shape, x.dtype), policy),
            undiscounted=np.zeros((c, self.d), np.float32), next_id=np.asarray(0, np.int32),
            selected=np.full((max(ccfg.rounds, 1), ccfg.num_select), -1, np.int32),
            points=np.full((most, self.d), np.nan, np.float32), num_points=np.asarray(0, np.int32),
            eval_steps=np.zeros(ccfg.rounds + 1, np.int32),
        )  # fmt: skip

    def advance(self, state: CMORLState, r: int, k: int, timings: dict) -> tuple[CMORLState, dict]:
        """Stage 1 (r = 0) or stage-2 round r: train, evaluate, offer to the archive."""
        selected, eval_steps = np.array(state.selected), np.array(state.eval_steps)
        if r == 0:
            disc, undisc, steps, params = self._stage1(timings)
            trained = len(disc)
        else:
            front, ids = self.front(state)
            earlier = set(int(i) for i in selected.ravel() if i >= 0)
            chosen = select_by_crowding(front, ids, earlier, self.ccfg.num_select)
            selected[r - 1, : len(chosen)] = chosen
            trained = len(chosen) * self.d
            if chosen:
                disc, undisc, steps, params = self._round(self._archived_params(state, chosen), r, timings)
            else:  # every archived policy was selected before: the round trains nothing
                disc, undisc, steps, params = np.zeros((0, self.d)), np.zeros((0, self.d)), 0, None
        eval_steps[r] = steps
        state = self._offer(state._replace(selected=selected, eval_steps=eval_steps), disc, undisc, params)
        row = dict(policies_trained=trained, env_steps=self.env_steps(state, r), eval_steps=int(eval_steps[: r + 1].sum()),
                   selected=selected[r - 1] if r else np.full(self.ccfg.num_select, -1, np.int32),
                   **indicators(self.front(state)[0], self.mo_spec))  # fmt: skip
        return state, {name: np.asarray([value]) if np.ndim(value) else np.asarray([[value]]) for name, value in row.items()}

    # -- the stages -------------------------------------------------------------------------------
    def _stage1(self, timings: dict):
        t0 = time.perf_counter()
        stage1_dir = os.path.join(self.out_dir, "stage1") if self.out_dir else None
        agent1, state1, pop1, t1 = train_linear(self.env, self.env_params, self.cfg, self.ccfg, self.seed,
                                                devices=self.devices, out_dir=stage1_dir)  # fmt: skip
        # Run time is the Runner's (its chunks, host I/O between them included); all the rest
        # is set-up: the agent's construction (an env trace), the init, the compiles.
        timings["stage1_s"] += t1["run_s"]
        timings["stage1_compile_s"] += time.perf_counter() - t0 - t1["run_s"]
        evaluate1 = evaluator(agent1, self.env, self.ccfg.eval_episodes, self.mo_spec.gamma)
        t = time.perf_counter()
        eval_keys = jax.random.split(jax.random.fold_in(jax.random.key(self.seed), STAGE1_EVAL_STREAM), self.size1)
        params1 = agent1.policy_params(state1)
        disc, undisc, steps = jax.device_get(evaluate1(params1, pop1.cfg, self.env_params, eval_keys))
        timings["eval_s"] += time.perf_counter() - t
        return disc, undisc, int(np.sum(steps)), params1

    def _round(self, start: Any, r: int, timings: dict):
        """Round r from the selected policies `start` (leaves `[N, ...]`): every (policy,
        objective) pair trained under its constraints, every intermediate policy evaluated."""
        ccfg, d, seed, env_params = self.ccfg, self.d, self.seed, self.env_params
        selected = jax.tree.leaves(start)[0].shape[0]
        n = selected * d
        keys = jax.random.split(jax.random.key(seed + ROUND_ESTIMATE_STRIDE * r), selected)
        j_r = np.asarray(self._estimate_many()(start, self.template, env_params, keys))
        configs, params_list = [], []
        for k in range(selected):
            for obj in range(d):
                configs.append(self.template.replace(
                    weights=np.eye(d, dtype=np.float32)[obj],
                    barrier_threshold=constraint_levels(j_r[k].astype(np.float64), obj, ccfg.beta).astype(np.float32),
                ))  # fmt: skip
                params_list.append(jax.tree.map(lambda x: x[k], start))
        cfgs = stack(configs)
        params = jax.tree.map(lambda *xs: np.stack(xs), *params_list)
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), ROUND_TRAIN_STREAM * r + i))(jnp.arange(n))
        trace = self._train_pairs(params, keys, cfgs, timings)
        # Evaluate every intermediate policy: [n, E] -> one batch of n * E.
        E = len(self.eval_at)
        flat = jax.tree.map(lambda x: x.reshape((n * E,) + x.shape[2:]), trace)
        flat_cfg = jax.tree.map(lambda x: np.repeat(np.asarray(x), E, axis=0), cfgs)
        t = time.perf_counter()
        ekeys = jax.random.split(jax.random.fold_in(jax.random.key(seed), ROUND_EVAL_STREAM + r - 1), n * E)
        evaluate2 = self._evaluate2()
        disc, undisc, steps = jax.device_get(evaluate2(flat, flat_cfg, env_params, ekeys))
        timings["eval_s"] += time.perf_counter() - t
        return disc, undisc, int(np.sum(steps)), flat

    def _train_pairs(self, params, keys, cfgs, timings: dict):
        """K constrained updates of every (π_r, objective) pair, as one population program
        sharded over the devices: the params after each evaluated update, leaves `[n, E, ...]`."""
        n = keys.shape[0]
        agent2, eval_at, K, env_params = self.agent2, self.eval_at, self.ccfg.constrained_updates, self.env_params

        def member(carry, c, env_params):
            params, key = carry
            state = agent2.init(key, c, env_params)
            state = state.replace(params=params)  # fresh optimiser and envs, π_r's networks

            def body(s, _):
                s, m = agent2.update(s, c, env_params)
                return s, (agent2.policy_params(s), m["barrier_weights"])

            _, (trace, weights) = jax.lax.scan(body, state, None, length=K)
            return jax.tree.map(lambda x: x[eval_at], trace), weights

        mesh = pop_lib.make_mesh(_devices(n, self.devices))
        # Lower on the sharded arguments: with "vmap" (no shard_map) the compiled program
        # takes its input shardings from the arguments it was lowered with.
        t = time.perf_counter()
        sharded = pop_lib.shard((params, keys), mesh), pop_lib.shard(cfgs, mesh)
        shard_s = time.perf_counter() - t
        if n not in self._compiled:
            fn = jax.jit(over_population(member, mesh, resolve_population_mode(self.ccfg.population_mode)))
            tc = time.perf_counter()
            self._compiled[n] = fn.lower(*sharded, env_params).compile()
            timings["stage2_compile_s"] += time.perf_counter() - tc
        t = time.perf_counter()
        trace, _ = self._compiled[n](*sharded, env_params)
        jax.block_until_ready(trace)
        timings["stage2_s"] += shard_s + time.perf_counter() - t
        return trace

    def _estimate_many(self):
        if not hasattr(self, "_estimate"):
            self._estimate = jax.jit(jax.vmap(moppo.value_estimator(self.env, self.template), (0, None, None, 0)))
        return self._estimate

    def _evaluate2(self):
        if not hasattr(self, "_evaluate"):
            self._evaluate = evaluator(self.agent2, self.env, self.ccfg.eval_episodes, self.mo_spec.gamma)
        return self._evaluate

    # -- the archive ------------------------------------------------------------------------------
    def _offer(self, state: CMORLState, points, undiscounted, params) -> CMORLState:
        """Offer `points: [n, d]` (with their undiscounted returns and params, stacked on axis
        0) to the archive; the bank then holds the params of every archived row."""
        n, first, c = len(points), int(state.next_id), self.ccfg.archive_capacity
        m = int(state.num_points)
        all_points = np.asarray(state.points).copy()
        all_points[m : m + n] = points
        state = state._replace(points=all_points, num_points=np.asarray(m + n, np.int32),
                               next_id=np.asarray(first + n, np.int32))  # fmt: skip
        if n == 0:
            return state
        old_mask, old_ids = np.asarray(state.archive.mask), np.asarray(state.archive.payload)
        ids = np.arange(first, first + n, dtype=np.int32)
        archive = _insert(state.archive, jnp.asarray(points, jnp.float32), jnp.asarray(ids),
                          jnp.asarray(self.mo_spec.ref_point, jnp.float32))  # fmt: skip
        row_of_old = {int(i): j for j, i in enumerate(old_ids) if old_mask[j]}
        # Row i of the new bank: an old row (index < c) or one of the offered policies (c + k).
        source = np.zeros(c, np.int64)
        for row, (kept, pid) in enumerate(zip(np.asarray(archive.mask), np.asarray(archive.payload))):
            if kept:
                source[row] = row_of_old[int(pid)] if pid < first else c + int(pid) - first
        host = jax.device_get(params)
        pick = lambda old, new: np.concatenate([np.asarray(old), np.asarray(new, np.asarray(old).dtype)])[source]  # noqa: E731
        bank = jax.tree.map(pick, state.bank, host)
        return state._replace(archive=archive, bank=bank, undiscounted=pick(state.undiscounted, undiscounted))

    @staticmethod
    def front(state: CMORLState) -> tuple[np.ndarray, np.ndarray]:
        points, ids = archive_front(state.archive)
        return np.asarray(points, np.float64), np.asarray(ids)

    def _archived_params(self, state: CMORLState, chosen: list[int]) -> Any:
        rows = [int(np.flatnonzero(np.asarray(state.archive.mask) & (np.asarray(state.archive.payload) == i))[0])
                for i in chosen]  # fmt: skip
        return jax.tree.map(lambda x: np.asarray(x)[rows], state.bank)

    def env_steps(self, state: CMORLState, r: int) -> int:
        """Training env steps up to round r, every parallel env counted."""
        chosen = int(np.sum(np.asarray(state.selected)[:r] >= 0)) if r else 0
        return (self.size1 * self.ccfg.init_updates + chosen * self.d * self.ccfg.constrained_updates) * self.batch

    def result(self, state: CMORLState, history: list[dict], timings: dict) -> CMORLResult:
        points, ids = self.front(state)
        rows = np.flatnonzero(np.asarray(state.archive.mask))
        bank = jax.device_get(state.bank)
        policies = {int(np.asarray(state.archive.payload)[j]): jax.tree.map(lambda x: np.asarray(x[j]), bank)
                    for j in rows}  # fmt: skip
        undiscounted = {int(np.asarray(state.archive.payload)[j]): np.asarray(state.undiscounted)[j] for j in rows}
        return CMORLResult(
            points=points,
            undiscounted=np.stack([undiscounted[int(i)] for i in ids]) if len(ids) else np.zeros((0, self.d)),
            ids=ids, policies={int(i): policies[int(i)] for i in ids}, history=history,
            env_steps=self.env_steps(state, self.ccfg.rounds),
            eval_steps=int(np.sum(state.eval_steps)), timings=timings,
            all_points=np.asarray(state.points, np.float64)[: int(state.num_points)],
        )  # fmt: skip


_insert = jax.jit(archive_insert_batch)
HISTORY_INTS = ("round", "policies_trained", "env_steps", "eval_steps", "cardinality")


def history_rows(columns: dict[str, np.ndarray]) -> list[dict]:
    """metrics columns (`[rounds]` each, `selected` as `[rounds, N]` padded with -1) as
    one dict per stage: stage 1 first, then every round."""
    out = []
    for i, r in enumerate(np.asarray(columns["round"]).astype(int)):
        row = {"stage": "stage 1" if r == 0 else f"round {r}"}
        for name, values in columns.items():
            if name in ("member", "seed") or (name == "selected" and r == 0):
                continue
            v = np.asarray(values)[i]
            row[name] = [int(x) for x in np.ravel(v) if x >= 0] if name == "selected" else (
                int(v) if name in HISTORY_INTS else float(v))  # fmt: skip
        out.append(row)
    return out


def run(
    env, env_params, cfg: moppo.MOPPOConfig, ccfg: CMORLConfig, seed: int = 0, devices: int | None = None,
    on_round: Callable[[dict], None] | None = None, out_dir: str | None = None, resume: bool = False,
    progress: bool = False, trackers: Any = None,
) -> CMORLResult:
    """Run C-MORL on `env` (a vector-reward env with an `mo_spec`) from one seed.

    `cfg` is the MO-PPO learner (its `weights` and `barrier_threshold` are set here);
    `on_round(history_row)` is called after stage 1 and after every round. With `out_dir`,
    every stage is checkpointed (stage 1's Runner in `out_dir/stage1`) and `resume=True`
    continues an interrupted run exactly. `trackers`: an `rlx.tracking.Trackers` that
    receives every stage's metrics (its owner closes it)."""
    from rlx.hostloop import HostLoop
    from rlx.logging import read_metrics

    program = CMORL(env, env_params, cfg, ccfg, seed, devices, out_dir)

    def on_chunk(done: int, metrics: dict) -> None:
        if on_round is not None:
            on_round(history_rows({"round": np.asarray([done - 1]), **{n: v[0] for n, v in metrics.items()}})[0])

    loop = HostLoop(program, out_dir, progress=progress, description="C-MORL", on_chunk=on_chunk, trackers=trackers)
    state, metrics, first, timings = loop.run(resume)
    if out_dir:
        columns = read_metrics(os.path.join(out_dir, "metrics.csv"))
    else:
        columns = {"round": np.arange(first, program.total), **{n: v[0] for n, v in metrics.items()}}
    return program.result(state, history_rows(columns), timings)


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
    """Read an archive written by `save_archive`: `(points [N, d], undiscounted [N, d],
    ids [N], policies)`.
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
