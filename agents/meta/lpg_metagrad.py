"""Meta-gradient LPG (Oh et al. 2020): the update rule trained by back-propagating through
K unrolled agent updates, beside ES (`rlx.agents.meta.es`) on the same inner agent, the
same rule network and the same levels (`rlx.agents.meta.lpg`, `rlx.envs.meta_grid`).

A batch of B agents lives on B levels. One meta-step, for every agent:

1. K agent updates with the current rule η (`inner_update`: `lpg.rollout`, then one SGD
   step on `lpg_loss`'s objective; π̂, ŷ are targets the agent does not differentiate, but
   they stay functions of η, so θ_K = θ_K(η));
2. one more rollout of the updated agent, and a separate value critic (SGD on GAE targets
   over the K rollouts and this one, as GROOVE does, meta/train.py lines 60-81) that gives
   its normalised GAE advantages Â;
3. the meta-objective (Oh et al. 2020's A2C-style objective and regularisers; GROOVE
   meta/train.py lines 83-100, agents/lpg_agent.py lines 59-65 and 118-119):

       L(η) = -mean(log π_θK(a|s) · Â) - β0 H(π_θ) - β1 H(y_θ) + β2 mean(π̂²) + β3 mean(Σ ŷ²)

   with H(π), H(y) the entropies of the agent after each of its K updates on that update's
   observations, and π̂, ŷ the rule's outputs during the K updates, all averaged over them.

The rule takes an optax step (Adam, global-norm clip) on the mean of the B agents'
gradients ∇η L (`jax.grad` through the `lax.scan` of K updates). The unroll is truncated:
the next meta-step continues every agent from θ_K without a gradient path to earlier steps,
and an agent that has made all N updates of its level's lifetime is replaced by a fresh
agent (and critic) on a freshly drawn level (GROOVE environments/level_sampler.py lines
140-151 and 234-262). Defaults are the papers' (GROOVE experiments/parse_args.py lines
97-141: K = 5, Adam lr 1e-4, β0 = 5e-2, β1 = 1e-3, β2 = 5e-3, β3 = 1e-3; clip 0.5, which
GROOVE's Adam path never applies, models/optim.py lines 12-17; we apply it).

The rollouts are data: sampled actions carry no gradient, and the rollout policy's
parameters are stop-gradiented (their only effect is through sampling). With
`input_gradients = True` (the default) the meta-gradient also flows through the rule's
inputs that depend on θ_k (π(a|s), y(s), y(s')), so it is the exact derivative of L as
computed, which the finite-difference test checks; `False` cuts that path as GROOVE does
(agents/lpg_agent.py lines 49-56 stop-gradient those inputs).

    step = jax.jit(make_meta_step(env, cfg, dist, mcfg))
    state = init_state(key, env, cfg, dist, mcfg, lpg.init_params(...))
    state, metrics = step(state, cfg)            # metrics: scalars, means over agents

`MetaGradTrainer(...).run()` drives it on the host loop (`rlx.hostloop`: metrics.csv,
checkpoints, bitwise resume), the way `es.MetaTrainer` drives OpenES; `rlx train
lpg-metagrad` is its command line.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlx.agents.meta import lpg
from rlx.config import config, static, to_dict
from rlx.envs import meta_grid as mg
from rlx.returns import gae


@config
class MetaGradConfig:
    """The meta-gradient outer loop. Defaults follow Oh et al. 2020 / GROOVE's meta-gradient
    LPG except the sizes (GROOVE: 512 agents, 3e4 meta-steps)."""

    num_agents: int = static(8, "agents per meta-step, each on its own level; the meta-gradient is their mean", ge=1)
    unroll: int = static(5, "K: agent updates differentiated through per meta-step", ge=1)
    meta_steps: int = static(100, "meta-steps (rule updates)", ge=1)
    chunk: int = static(10, "meta-steps per jitted call of the host loop", ge=1)
    lr: float = static(1e-4, "Adam learning rate of the rule", gt=0)
    max_grad_norm: float = static(0.5, "global-norm clip of the meta-gradient (0 = none)", ge=0)
    policy_entropy: float = static(5e-2, "β0: bonus on the updated policy's entropy", ge=0)
    target_entropy: float = static(1e-3, "β1: bonus on the updated y-prediction's entropy", ge=0)
    policy_l2: float = static(5e-3, "β2: penalty on mean(π̂²)", ge=0)
    target_l2: float = static(1e-3, "β3: penalty on mean(Σ ŷ²)", ge=0)
    critic_max_grad_norm: float = static(0.5, "global-norm clip of the value critic's SGD step (GROOVE's)", ge=0)
    input_gradients: bool = static(True, "differentiate through the rule's θ-dependent inputs (exact gradient); False cuts them as GROOVE does")
    eval_every: int = static(0, "score the rule on held-out levels every this many meta-steps, at chunk starts (0 = never)", ge=0)
    seed: int = static(0, "seed of the levels, agents and rollouts")


class MetaGradState(NamedTuple):
    """The whole meta-training state (one pytree; agents, critics and levels lead with [B])."""

    lpg_params: dict  # the rule η
    opt_state: Any  # optax state of η
    agents: lpg.AgentState  # [B]
    critics: list  # value critics [(w [B, in, out], b [B, out]), ...], output 1
    levels: mg.Level  # [B]
    key: jax.Array  # typed key of the next meta-step
    step: jax.Array  # int32 []: meta-steps made
    agents_started: jax.Array  # int32 []: agents started so far (B at the start)


def optimizer(mcfg: MetaGradConfig) -> optax.GradientTransformation:
    """Adam on the rule, after a global-norm clip when `max_grad_norm > 0`."""
    adam = optax.adam(mcfg.lr)
    return optax.chain(optax.clip_by_global_norm(mcfg.max_grad_norm), adam) if mcfg.max_grad_norm > 0 else adam


def _check(cfg: lpg.LPGConfig, dist: mg.GridDistribution | None, env: mg.MetaGrid) -> None:
    if cfg.update_rule != "lpg":
        raise ValueError(f"lpg_metagrad: cfg.update_rule = {cfg.update_rule!r}; meta-gradients train the 'lpg' rule.")
    if dist is not None and (dist.max_size, dist.max_objects) != (env.max_size, env.max_objects):
        raise ValueError(f"GridDistribution max_size/max_objects = {(dist.max_size, dist.max_objects)} differ from "
                         f"the env's {(env.max_size, env.max_objects)}.")  # fmt: skip


def new_agent(key: jax.Array, env: mg.MetaGrid, cfg: lpg.LPGConfig, level: mg.Level) -> tuple[lpg.AgentState, list]:
    """A fresh agent (`lpg.init_agent`) and a fresh value critic (zero output layer) on one level."""
    k_agent, k_critic = jax.random.split(key)
    obs_dim = env.observation_space(level).shape[0]
    return lpg.init_agent(k_agent, env, cfg, level), lpg._mlp_init(k_critic, (obs_dim, *cfg.hidden, 1))


def init_state(key: jax.Array, env: mg.MetaGrid, cfg: lpg.LPGConfig, dist: mg.GridDistribution,
               mcfg: MetaGradConfig, init: dict) -> MetaGradState:  # fmt: skip
    """B levels from `dist`, a fresh agent and critic on each, the rule `init` and its optimiser state."""
    _check(cfg, dist, env)
    lpg.check_params(init, cfg, "lpg_metagrad init")
    k_levels, k_agents, k_run = jax.random.split(key, 3)
    B = mcfg.num_agents
    levels = mg.sample_levels(k_levels, dist, B)
    agents, critics = jax.vmap(new_agent, (0, None, None, 0))(jax.random.split(k_agents, B), env, cfg, levels)
    return MetaGradState(init, optimizer(mcfg).init(init), agents, critics, levels, k_run, jnp.int32(0), jnp.int32(B))


# -- the inner update, differentiable in η ----------------------------------------------------------
def rule_outputs(eta: dict, params: dict, traj: lpg.Rollout, cfg: lpg.LPGConfig, progress, lifetime,
                 input_gradients: bool = True) -> tuple[jax.Array, jax.Array]:  # fmt: skip
    """The rule's targets (π̂ [T, B], ŷ [T, B, Y]) for the agent `params` on `traj` [T, B]: the
    inputs of `lpg.lpg_loss`, without its stop-gradients, so they are functions of η (and of
    θ through the inputs, unless `input_gradients` is False)."""
    logits, y_logits = lpg.grid_forward(params, traj.obs)
    logp_a = jnp.take_along_axis(jax.nn.log_softmax(logits), traj.action[..., None], -1)[..., 0]
    y = jax.nn.softmax(y_logits)
    y_next = jax.nn.softmax(lpg.grid_forward(params, traj.next_obs)[1])
    if not input_gradients:
        logp_a, y, y_next = jax.lax.stop_gradient((logp_a, y, y_next))
    done = traj.done.astype(traj.reward.dtype)
    feats = [traj.reward, done, jnp.exp(logp_a), lpg.phi(eta, y), (1 - done) * lpg.phi(eta, y_next)]
    if cfg.temporal:
        ta = cfg.time_inputs * jnp.stack([progress, jnp.log(lifetime) / lpg.LOG_N_SCALE])
        feats += [jnp.full_like(done, ta[0]), jnp.full_like(done, ta[1])]
    return lpg.meta_outputs(eta, jnp.stack(feats, -1), traj.done)


def agent_loss(params: dict, traj: lpg.Rollout, pi_hat: jax.Array, y_hat: jax.Array, kl_coef) -> jax.Array:
    """`lpg.lpg_loss` with the targets given: -mean(π̂ log π(a|s)) + kl_coef mean(KL(y ‖ ŷ)) (scalar).
    π̂ [T, B] and ŷ [T, B, Y] are constants of this function (the agent's gradient)."""
    logits, y_logits = lpg.grid_forward(params, traj.obs)
    logp_a = jnp.take_along_axis(jax.nn.log_softmax(logits), traj.action[..., None], -1)[..., 0]
    y = jax.nn.softmax(y_logits)
    kl = jnp.sum(y * (jnp.log(y + 1e-8) - jnp.log(y_hat + 1e-8)), -1)
    return -jnp.mean(pi_hat * logp_a) + kl_coef * jnp.mean(kl)


def _entropy(logits: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.exp(logp) * logp, -1).mean()


def inner_update(eta: dict, state: lpg.AgentState, env: mg.MetaGrid, cfg: lpg.LPGConfig, level: mg.Level,
                 lifetime, input_gradients: bool = True) -> tuple[lpg.AgentState, lpg.Rollout, dict]:  # fmt: skip
    """One agent update under the rule η, as `lpg.update` computes it, differentiable in η.
    An agent that has made `lifetime` updates keeps its parameters. Returns the new state, the
    rollout [T, B] and the regulariser terms of this update (scalars) with `active` (0 or 1)."""
    frozen = state._replace(params=jax.lax.stop_gradient(state.params))  # sampling carries no gradient
    after, traj = lpg.rollout(frozen, env, cfg, level)
    active = state.num_updates < lifetime
    progress = state.num_updates / lifetime
    pi_hat, y_hat = rule_outputs(eta, state.params, traj, cfg, progress, lifetime, input_gradients)
    grads = jax.grad(agent_loss)(state.params, traj, pi_hat, y_hat, cfg.kl_coef)
    lrs = {"pi": cfg.lr_pi, "y": cfg.lr_y}
    new = {k: jax.tree.map(lambda p, g, k=k: p - lrs[k] * g, state.params[k], grads[k]) for k in state.params}
    params = jax.tree.map(lambda n, o: jnp.where(active, n, o), new, state.params)
    logits, y_logits = lpg.grid_forward(params, traj.obs)
    reg = {"policy_entropy": _entropy(logits), "y_entropy": _entropy(y_logits),
           "pi_hat_l2": jnp.mean(pi_hat**2), "y_hat_l2": jnp.mean(jnp.sum(y_hat**2, -1)),
           "active": active.astype(traj.reward.dtype)}  # fmt: skip
    state = after._replace(params=params, num_updates=state.num_updates + active.astype(jnp.int32))
    return state, traj, reg


def critic_update(critic: list, traj: lpg.Rollout, cfg: lpg.LPGConfig,
                  max_grad_norm: float = 0.5) -> tuple[list, jax.Array, jax.Array]:  # fmt: skip
    """One SGD step (lr_y, gradient clipped to global norm `max_grad_norm`) of the value critic
    on GAE(γ, λ) targets of `traj` [T, B]. Returns (critic, value loss, advantages [T, B]
    under the critic before the step). The clip is GROOVE's for its SGD grid agents
    (models/optim.py lines 6-11): unclipped, lr 4 diverges on a state visited in more than
    half of the samples."""

    def loss(c):
        v = lpg._mlp(c, traj.obs)[..., 0]
        v_next = jax.lax.stop_gradient(lpg._mlp(c, traj.next_obs)[..., 0])
        adv, ret = gae(traj.reward, jax.lax.stop_gradient(v), v_next, traj.terminated, traj.done, cfg.gamma, cfg.lam)
        return 0.5 * jnp.mean((v - ret) ** 2), adv

    (value_loss, adv), grads = jax.value_and_grad(loss, has_aux=True)(critic)
    if max_grad_norm > 0:
        grads = optax.clip_by_global_norm(max_grad_norm).update(grads, optax.EmptyState())[0]
    return jax.tree.map(lambda p, g: p - cfg.lr_y * g, critic, grads), value_loss, adv


# -- the meta-objective and the meta-step ------------------------------------------------------------
def make_meta_objective(env: mg.MetaGrid, mcfg: MetaGradConfig):
    """`objective(eta, agents [B], critics [B], levels [B], cfg) -> (L, aux)`: L (scalar) is the
    mean over agents of the regularised meta-objective after K updates (module docstring);
    aux = (agents, critics, metrics {name: [B]})."""
    K, clip = mcfg.unroll, mcfg.critic_max_grad_norm

    def one(eta, agent, critic, level, cfg):
        N = lpg.lifetime_of(cfg, level)

        def body(state, _):
            state, traj, reg = inner_update(eta, state, env, cfg, level, N, mcfg.input_gradients)
            return state, (traj, reg)

        agent, (trajs, regs) = jax.lax.scan(body, agent, None, K)
        agent_eval = agent._replace(params=jax.lax.stop_gradient(agent.params))
        agent_after, test = lpg.rollout(agent_eval, env, cfg, level)
        agent_after = agent_after._replace(params=agent.params)
        # The critic learns from the K rollouts, then scores the test rollout (GROOVE's order).
        critic, _ = jax.lax.scan(lambda c, t: (critic_update(c, t, cfg, clip)[0], None), critic, trajs)
        critic, value_loss, adv = critic_update(critic, test, cfg, clip)
        adv = jax.lax.stop_gradient((adv - adv.mean()) / (adv.std() + 1e-8))
        logits = lpg.grid_forward(agent.params, test.obs)[0]
        logp_a = jnp.take_along_axis(jax.nn.log_softmax(logits), test.action[..., None], -1)[..., 0]
        pg = -jnp.mean(logp_a * adv)
        w = regs.pop("active")
        mean = {n: jnp.sum(w * v) / jnp.maximum(jnp.sum(w), 1.0) for n, v in regs.items()}
        reg = (-mcfg.policy_entropy * mean["policy_entropy"] - mcfg.target_entropy * mean["y_entropy"]
               + mcfg.policy_l2 * mean["pi_hat_l2"] + mcfg.target_l2 * mean["y_hat_l2"])  # fmt: skip
        loss = pg + reg
        metrics = {"meta_loss": loss, "pg_loss": pg, **mean, "value_loss": value_loss,
                   "reward_per_step": jnp.mean(test.reward), "updates_made": jnp.sum(w)}  # fmt: skip
        return loss, (agent_after, jax.lax.stop_gradient(critic), jax.lax.stop_gradient(metrics))

    def objective(eta, agents, critics, levels, cfg):
        losses, aux = jax.vmap(one, (None, 0, 0, 0, None))(eta, agents, critics, levels, cfg)
        return jnp.mean(losses), aux

    return objective


def make_meta_step(env: mg.MetaGrid, cfg: lpg.LPGConfig, dist: mg.GridDistribution, mcfg: MetaGradConfig):
    """`meta_step(state, cfg) -> (state, metrics)`: K differentiated updates of every agent,
    one optax step of the rule on the mean meta-gradient, then finished agents replaced by
    fresh ones on fresh levels. `cfg` is an argument (its traced fields may change without a
    recompile); its `lpg_params` is ignored (the rule is `state.lpg_params`). metrics are
    scalars: means over agents, plus grad_norm and resets (agents replaced this step)."""
    _check(cfg, dist, env)
    objective = make_meta_objective(env, mcfg)
    opt = optimizer(mcfg)

    def meta_step(state: MetaGradState, cfg: lpg.LPGConfig) -> tuple[MetaGradState, dict]:
        key, k_levels, k_agents = jax.random.split(state.key, 3)
        (_, (agents, critics, per_agent)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.lpg_params, state.agents, state.critics, state.levels, cfg
        )
        updates, opt_state = opt.update(grads, state.opt_state, state.lpg_params)
        params = optax.apply_updates(state.lpg_params, updates)
        # Truncated unrolls: agents at the end of their lifetime start again on new levels.
        B = mcfg.num_agents
        finished = agents.num_updates >= jax.vmap(lpg.lifetime_of, (None, 0))(cfg, state.levels)
        fresh_levels = mg.sample_levels(k_levels, dist, B)
        fresh_agents, fresh_critics = jax.vmap(new_agent, (0, None, None, 0))(
            jax.random.split(k_agents, B), env, cfg, fresh_levels
        )

        def pick(new, old):
            return jnp.where(finished.reshape((B,) + (1,) * (new.ndim - 1)), new, old)

        resets = jnp.sum(finished).astype(jnp.int32)
        metrics = {n: jnp.mean(v) for n, v in per_agent.items()}
        metrics.update(grad_norm=optax.global_norm(grads), resets=resets)
        state = MetaGradState(
            params, opt_state, jax.tree.map(pick, fresh_agents, agents), jax.tree.map(pick, fresh_critics, critics),
            jax.tree.map(pick, fresh_levels, state.levels), key, state.step + 1, state.agents_started + resets,
        )  # fmt: skip
        return state, metrics

    return meta_step


_init_state = jax.jit(init_state, static_argnums=(1, 3, 4))


def program_settings(mcfg: MetaGradConfig) -> MetaGradConfig:
    """`mcfg` with only the fields that shape the compiled meta-step (the run length, chunk,
    evaluation and seed reset), so runs that differ in those share one program."""
    return mcfg.replace(meta_steps=1, chunk=1, eval_every=0, seed=0)


@functools.lru_cache(maxsize=16)
def _chunk_program(env: mg.MetaGrid, dist: mg.GridDistribution, mcfg: MetaGradConfig, k: int):
    """`jit(chunk(state, cfg) -> (state, metrics {name: [k]}))`, `k` meta-steps in one `lax.scan`."""

    def chunk(state, cfg):
        step = make_meta_step(env, cfg, dist, mcfg)
        return jax.lax.scan(lambda s, _: step(s, cfg), state, None, k)

    return jax.jit(chunk)


_COMPILED: dict = {}


def compiled_chunk(env: mg.MetaGrid, dist: mg.GridDistribution, mcfg: MetaGradConfig, k: int, state: MetaGradState,
                   cfg: lpg.LPGConfig, timings: dict | None = None):  # fmt: skip
    """The compiled `k`-meta-step chunk for these arguments' shapes and static fields, compiled
    ahead of time once per process (its time added to `timings["compile_s"]`) and shared by
    every trainer with the same program settings."""
    program = _chunk_program(env, dist, program_settings(mcfg), k)
    args = (state, cfg)
    key = (program, jax.tree.structure(args), tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in jax.tree.leaves(args)))
    if key not in _COMPILED:
        t = time.perf_counter()
        _COMPILED[key] = program.lower(*args).compile()
        if timings is not None:
            timings["compile_s"] = timings.get("compile_s", 0.0) + time.perf_counter() - t
    return _COMPILED[key]


# -- the host-side trainer ---------------------------------------------------------------------------
class MetaGradResult(NamedTuple):
    """What `MetaGradTrainer.run` returns: the final rule, the per-meta-step history (metrics.csv
    as columns), the final state, timings and the final rule's held-out scores `[H]` (or None)."""

    params: dict
    history: dict[str, np.ndarray]
    state: MetaGradState
    timings: dict[str, float]
    held_out: np.ndarray | None


class MetaGradTrainer:
    """Meta-gradient LPG as a program of the host loop (`rlx.hostloop`), like `es.MetaTrainer`:
    a step is one meta-step, run `mcfg.chunk` at a time in one jitted scan; the run directory
    holds metrics.csv, `lpg_params.npz` (the rule, for `rlx train meta-test --drift
    NAME=lpg:PATH`), verified checkpoints of the whole state, and `run(resume=True)` repeats
    an uninterrupted run bit for bit. `held_out` (levels [H]) scores the rule with
    `lpg.make_evaluate` (fresh agents for each level's lifetime) every `eval_every` meta-steps
    and at the end."""

    step_name = "meta_step"
    progress_keys = ("meta_loss", "policy_entropy", "held_out")

    def __init__(self, env: mg.MetaGrid, cfg: lpg.LPGConfig, dist: mg.GridDistribution, init: dict,
                 mcfg: MetaGradConfig | None = None, out_dir: str | None = None, progress: bool = True,
                 held_out: mg.Level | None = None):  # fmt: skip
        self.env, self.dist, self.mcfg = env, dist, mcfg or MetaGradConfig()
        _check(cfg, dist, env)
        self.init = jax.tree.map(jnp.asarray, init)
        self.cfg = cfg.replace(lpg_params=self.init)  # validates the start point
        self.out_dir, self.progress, self.held_out = out_dir, progress, held_out
        self.total, self.chunk = self.mcfg.meta_steps, self.mcfg.chunk
        self.members = [{"member": 0, "seed": self.mcfg.seed}]
        self._evaluate = lpg.make_evaluate(env, cfg) if held_out is not None else None

    def spec(self) -> dict:
        """config.json: every setting but `meta_steps` (a resume may extend the run), and a
        digest of the start rule."""
        digest = hashlib.sha1(b"".join(np.asarray(v).tobytes() for v in jax.tree.leaves(self.init))).hexdigest()
        inner = {k: v for k, v in to_dict(self.cfg).items() if k != "lpg_params"}
        return {"kind": "lpg-metagrad", "metagrad": {k: v for k, v in to_dict(self.mcfg).items() if k != "meta_steps"},
                "inner": inner, "distribution": to_dict(self.dist), "init_sha1": digest,
                "held_out_levels": 0 if self.held_out is None else int(self.held_out.size.shape[0])}  # fmt: skip

    def check(self) -> None:
        pass

    def start(self, timings: dict) -> MetaGradState:
        timings.setdefault("eval_s", 0.0)
        key = jax.random.key(self.mcfg.seed)
        return _init_state(key, self.env, self.cfg, self.dist, program_settings(self.mcfg), self.init)

    def score(self, params: dict) -> np.ndarray:
        """[H] return / optimum of fresh agents trained by the rule `params` on the held-out levels."""
        key = jax.random.fold_in(jax.random.key(self.mcfg.seed), 2**31 - 1)
        return self._evaluate(key, self.cfg.replace(lpg_params=params), self.held_out)

    def advance(self, state: MetaGradState, done: int, k: int, timings: dict) -> tuple[MetaGradState, dict]:
        """`k` meta-steps; metrics `[1, k]` (held_out is NaN but where the rule was scored)."""
        held = np.full(k, np.nan)
        if self._evaluate is not None and self.mcfg.eval_every and done % self.mcfg.eval_every == 0:
            t = time.perf_counter()
            held[0] = float(np.mean(self.score(state.lpg_params)))
            timings["eval_s"] += time.perf_counter() - t
        program = compiled_chunk(self.env, self.dist, self.mcfg, k, state, self.cfg, timings)
        t = time.perf_counter()
        state, metrics = program(state, self.cfg)
        metrics = jax.device_get(metrics)
        timings["run_s"] += time.perf_counter() - t
        out = {n: np.asarray(v, float)[None] for n, v in metrics.items()}
        out["held_out"] = held[None]
        return state, out

    def write_files(self, out_dir: str, state: MetaGradState, done: int) -> None:
        from rlx.agents.meta.es import save_params

        save_params(os.path.join(out_dir, "lpg_params.npz"), state.lpg_params)

    def run(self, resume: bool = False, trackers: Any = None) -> MetaGradResult:
        """All meta-steps on the host loop, then the final rule scored on the held-out levels."""
        from rlx.hostloop import HostLoop
        from rlx.logging import read_metrics, write_json

        loop = HostLoop(self, self.out_dir, progress=self.progress, description="LPG meta-gradients",
                        trackers=trackers, nan_advice="Lower MetaGradConfig.lr or the agent's learning rates.")  # fmt: skip
        state, metrics, first, timings = loop.run(resume)
        final = None
        if self._evaluate is not None:
            t = time.perf_counter()
            final = self.score(state.lpg_params)
            timings["eval_s"] = timings.get("eval_s", 0.0) + time.perf_counter() - t
        if self.out_dir:
            history = {n: v for n, v in read_metrics(os.path.join(self.out_dir, "metrics.csv")).items()
                       if n not in ("member", "seed")}  # fmt: skip
            write_json(os.path.join(self.out_dir, "summary.json"), {
                "meta_steps": self.total, "timings": timings,
                "held_out_mean": None if final is None else float(np.mean(final)),
            })  # fmt: skip
        else:
            history = {"meta_step": np.arange(first, self.total, dtype=float)}
            history.update({n: np.asarray(v[0], float) for n, v in metrics.items()})
        return MetaGradResult(state.lpg_params, history, state, timings, final)


def load_rule(path: str) -> dict:
    """A rule saved by the trainer (`lpg_params.npz`), as the dict `lpg.init_params` builds."""
    from rlx.agents.meta.es import load_params

    return load_params(path)


# -- the command line ----------------------------------------------------------------------------------
def parser():
    """The flags of `rlx train lpg-metagrad`."""
    import argparse

    from rlx.cli import add_run_flags

    p = argparse.ArgumentParser(prog="rlx train lpg-metagrad", description=__doc__.splitlines()[0])
    p.add_argument("--max-size", type=int, default=5, help="largest grid side (levels are 3..max-size)")
    p.add_argument("--objects", type=int, default=2, help="most object types per level")
    p.add_argument("--lifetime", type=int, nargs=2, default=(10, 60), help="log-uniform range of agent lifetimes")
    p.add_argument("--meta-hidden", type=int, default=16, help="GRU units of the rule")
    p.add_argument("--temporal", action="store_true", help="TA-LPG: the rule also sees n/N and log N")
    p.add_argument("--meta-steps", type=int, default=200)
    p.add_argument("--agents", type=int, default=8, help="agents (levels) per meta-step")
    p.add_argument("--unroll", type=int, default=5, help="K: differentiated agent updates per meta-step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the rule")
    p.add_argument("--held-out", type=int, default=32, help="held-out levels scoring the rule (0: none)")
    add_run_flags(p, "runs/lpg-metagrad")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """`rlx train lpg-metagrad ARGV`: meta-gradient LPG on grid worlds; returns the exit code."""
    args = parser().parse_args(argv)
    from rlx.config import apply_overrides
    from rlx.tracking import Trackers

    trackers = Trackers(args.log)
    out = args.resume or args.out or "runs/lpg-metagrad"
    env = mg.MetaGrid(args.max_size, args.objects)
    walls = max(0, args.max_size**2 // 6)
    dist = mg.GridDistribution(min_size=min(3, args.max_size), max_size=args.max_size, max_objects=args.objects,
                               walls=walls, episode_length=(10, 40), lifetime=tuple(args.lifetime))  # fmt: skip
    init = lpg.init_params(jax.random.key(args.seed), args.temporal, args.meta_hidden)
    cfg = apply_overrides(lpg.LPGConfig(num_envs=4, num_steps=10, meta_hidden=args.meta_hidden, temporal=args.temporal,
                                        max_lifetime=args.lifetime[1], lpg_params=init), args.set)  # fmt: skip
    mcfg = MetaGradConfig(num_agents=args.agents, unroll=args.unroll, meta_steps=args.meta_steps, lr=args.lr,
                          chunk=min(10, args.meta_steps), seed=args.seed,
                          eval_every=10 * min(10, args.meta_steps) if args.held_out else 0)  # fmt: skip
    held = mg.sample_levels(jax.random.key(10**6 + args.seed), dist, args.held_out) if args.held_out else None
    trainer = MetaGradTrainer(env, cfg, dist, init, mcfg, out_dir=out, progress=not args.no_progress, held_out=held)
    with trackers:
        result = trainer.run(resume=bool(args.resume), trackers=trackers if trackers.names else None)
    h = result.history
    line = f"{out}: {len(h['meta_step'])} meta-steps; meta-loss {h['meta_loss'][0]:.4g} -> {h['meta_loss'][-1]:.4g}"
    if result.held_out is not None:
        line += f"; held-out return / optimum {float(np.mean(result.held_out)):.3f}"
    print(line + f"; the rule is in {out}/lpg_params.npz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
