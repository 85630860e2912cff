"""Multi-objective PPO: a vector critic, per-objective GAE and a scalarised advantage.

The env's reward is a vector `r: [d]`. The critic has one value head per objective
and GAE runs per objective, giving `A: [T, B, d]`. The policy learns from the
scalarised advantage

    A_w = sum_j w_j A_j / s_j,                                      (linear scalarisation)

standardised per minibatch, where `w: [d]` is the preference (`MOPPOConfig.weights`,
a traced field, so a population over preferences is one vmapped program) and
`s: [d]` the per-objective reward scale (`reward_scale`): the critic learns on
scaled rewards, while the preference always refers to the env's own units, as the
C-MORL code does when it de-normalises returns before scalarising.

Constrained updates (C-MORL, Liu et al. 2025, Eq. 4). With `barrier_threshold: [d]`
set, the update ascends the interior-point objective

    J_w(π) + (1/t) sum_{j : c_j > -inf} log(J_j(π) - c_j),

whose gradient at the current policy is that of a linear scalarisation with
weights `w_j + 1 / (t (J_j - c_j))`. Every update estimates `J(π): [d]` with the
vector critic at fresh initial states, forms those weights (normalised to the
simplex; the advantage is standardised anyway) and takes a PPO step on them. The
clipped ratio keeps the step local, where the linearisation holds.

The learning itself is `rlx.agents.ppo`: this module only adds the preference.

Departures from the C-MORL base learner (Liu et al., ICLR 2025): the per-objective reward scale is a
fixed config vector rather than running return statistics (the PPO state stays as it
is, and the scale only conditions the critic, since the preference is applied in env
units and the scalar advantage is standardised); the actor has no LayerNorm.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rlx.agents import ppo
from rlx.pareto import check_weights
from rlx.config import config, stack, traced
from rlx.networks import Critic
from rlx.population import Population
from rlx.running_stats import normalize
from rlx.types import Agent

#: Each constraint's gap `J_j - c_j` is floored at this fraction of max(|c_j|, 1), so an
#: infeasible start gets a large, finite weight that pushes back into the feasible set.
GAP_FLOOR = 1e-3


def _as_array(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return np.asarray(value, np.float32)
    return value


def _concrete(value: Any) -> np.ndarray | None:
    """`value` as numpy if it is a concrete numeric array, else None (tracers, specs, None)."""
    if value is None or isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, (np.ndarray, np.generic, jax.Array, float, int)):
        arr = np.asarray(value)
        return arr if arr.dtype.kind in "biuf" else None
    return None


@config
class MOPPOConfig(ppo.PPOConfig):
    """PPO settings plus the preference. `weights`, `barrier_threshold` and a vector
    `reward_scale` have a trailing objective axis `[d]` (a population adds `[P, d]`)."""

    weights: Any = traced(None, "preference w on the simplex, [d] (required)")
    barrier_threshold: Any = traced(
        None, "C-MORL constraint levels c, [d]; -inf for an unconstrained objective; None: no barrier"
    )
    barrier_t: float = traced(20.0, "log-barrier coefficient t (the barrier is scaled by 1/t)", gt=0)

    def __post_init__(self):
        for name in ("weights", "barrier_threshold", "reward_scale"):
            object.__setattr__(self, name, _as_array(getattr(self, name)))

    def check(self) -> None:
        super().check()
        if self.weights is None:
            raise ValueError(
                "MOPPOConfig.weights is required: a preference vector of shape [d] on the simplex, "
                "e.g. weights=(0.5, 0.5) for a 2-objective env."
            )
        w = _concrete(self.weights)
        if w is not None:
            if w.ndim < 1:
                raise ValueError(f"MOPPOConfig.weights = {w!r} is invalid: it must be a vector of shape [d].")
            try:
                check_weights(w.reshape(-1, w.shape[-1]), w.shape[-1])
            except ValueError as err:
                raise ValueError(f"MOPPOConfig.weights = {w.tolist()} is invalid: {err}") from None
        for name in ("barrier_threshold", "reward_scale"):
            v, ww = _concrete(getattr(self, name)), w
            # A scalar reward_scale (or, in a population, one per member) has no objective axis.
            if v is None or ww is None or v.ndim < ww.ndim:
                continue
            if v.shape[-1] != ww.shape[-1]:
                raise ValueError(
                    f"MOPPOConfig.{name} has {v.shape[-1]} objectives but weights has {ww.shape[-1]}: "
                    "both must be [d]."
                )
        t = _concrete(self.barrier_threshold)
        if t is not None and np.any(np.isnan(t) | (t == np.inf)):
            raise ValueError("MOPPOConfig.barrier_threshold must be finite or -inf (unconstrained), not NaN or +inf.")


def cmorl_config(**overrides: Any) -> MOPPOConfig:
    """The C-MORL paper's base learner: 64-64 networks, lr 3e-4 decayed
    linearly, γ 0.995, λ 0.95, 512 steps x 8 envs, 10 epochs x 32 minibatches, clip
    0.2, no entropy bonus, value coefficient 0.5, gradient norm 0.5, observation
    normalisation. (The paper's actor also has LayerNorm; ours does not.)"""
    base = dict(
        num_envs=8, num_steps=512, update_epochs=10, num_minibatches=32, hidden=(64, 64),
        critic_hidden=(64, 64), lr=3e-4, anneal_lr=True, gamma=0.995, gae_lambda=0.95, clip_eps=0.2,
        ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5, normalize_obs=True, total_steps=8 * 512 * 100,
    )  # fmt: skip
    base.update(overrides)
    return MOPPOConfig(**base)


def check_against_env(env: Any, cfg: MOPPOConfig) -> int:
    """Raise (before compiling) unless `cfg`'s vectors match `env.reward_dim`; return d."""
    d = getattr(env, "reward_dim", None)
    if not d:
        raise ValueError(
            f"MO-PPO needs a vector-reward env (reward_dim = d), got {getattr(env, 'name', env)!r} "
            f"with reward_dim={d}; use rlx.agents.ppo for scalar rewards."
        )
    for name in ("weights", "barrier_threshold", "reward_scale"):
        v = getattr(cfg, name)
        shape = np.shape(v) if v is not None else None
        if shape is None or (name == "reward_scale" and shape == ()):
            continue
        if not shape or shape[-1] != d:
            raise ValueError(
                f"MOPPOConfig.{name} has shape {shape} but {env.name} has {d} objectives: "
                f"give a vector of shape ({d},)."
            )
    return d


def effective_weights(weights, j_hat, threshold, t):
    """Weights of the linearised interior-point objective, normalised to the simplex.

    weights, j_hat, threshold: `[d]`; t: scalar. Returns `[d]`:
    `w_j + 1 / (t * max(J_j - c_j, floor_j))` for constrained objectives (finite `c_j`),
    `w_j` for the others, divided by the sum.
    """
    active = jnp.isfinite(threshold)
    safe_thr = jnp.where(active, threshold, 0.0)
    floor = GAP_FLOOR * jnp.maximum(jnp.abs(safe_thr), 1.0)
    gap = jnp.maximum(j_hat - safe_thr, floor)
    w = weights + jnp.where(active, 1.0 / (t * gap), 0.0)
    return w / jnp.sum(w)


def value_estimator(env: Any, cfg: MOPPOConfig):
    """`fn(params, c, env_params, key) -> J(π): [d]`: the critic's estimate used by the
    barrier (C-MORL sets its constraint levels from the selected policy's estimate)."""
    d = check_against_env(env, cfg)
    critic = Critic(cfg.critic_hidden, cfg.activation, reward_dim=d)
    obs_clip = getattr(cfg, "obs_clip", 10.0)

    def fn(params: ppo.PPOParams, c: MOPPOConfig, env_params, key):
        obs, _ = jax.vmap(env.reset, (0, None))(jax.random.split(key, cfg.num_envs), env_params)
        if cfg.normalize_obs:
            obs = normalize(params.obs_stats, obs, obs_clip)
        return critic.apply(params.critic, obs, 1).mean(0) / c.reward_scale

    return fn


def make_agent(env: Any, cfg: MOPPOConfig) -> Agent:
    """MO-PPO for a vector-reward `env`: `rlx.agents.ppo` with a vector critic and the
    scalarisation of the module docstring. The train state is PPO's (`ppo.PPOState`)."""
    d = check_against_env(env, cfg)

    def scalarize(adv, c):  # [T, B, d] -> [T, B], in the env's own reward units
        return adv @ (jnp.asarray(c.weights, adv.dtype) / c.reward_scale)

    base = ppo.make_agent(env, cfg, scalarize=scalarize)
    if cfg.barrier_threshold is None:
        return base
    value_estimate = value_estimator(env, cfg)

    def update(state: ppo.PPOState, c: MOPPOConfig, env_params):
        # A key of its own, so the PPO stream is the same as without the barrier.
        key = jax.random.fold_in(state.key, 0x4A5)
        j_hat = value_estimate(state.params, c, env_params, key)
        w = effective_weights(jnp.asarray(c.weights), j_hat, jnp.asarray(c.barrier_threshold), c.barrier_t)
        state, metrics = base.update(state, c.replace(weights=w), env_params)
        metrics.update(value_estimate=j_hat, barrier_weights=w)
        return state, metrics

    return base._replace(update=update)


def preference_population(cfg: MOPPOConfig, weights, seeds: int | list[int] = 1) -> Population:
    """One member per (weight vector, seed): `weights: [M, d]` -> a population of `M * S`
    members (weight-major, seed-minor) whose configs differ only in `weights`."""
    w = np.asarray(weights, np.float64)
    if w.ndim != 2:
        raise ValueError(f"preference_population: weights must be [M, d], got shape {w.shape}.")
    check_weights(w, w.shape[1])
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("preference_population: need at least one seed.")
    configs, keys, members = [], [], []
    for row in w:
        c = cfg.replace(weights=row.astype(np.float32))
        for seed in seed_list:
            configs.append(c)
            keys.append(jax.random.key(seed))
            members.append({"member": len(members), "seed": seed, "weights": ";".join(f"{x:.4g}" for x in row)})
    return Population(jnp.stack(keys), stack(configs), members)


def two_objective_config(**overrides: Any) -> MOPPOConfig:
    """MO-PPO's defaults with equal weights on two objectives: the registry's starting
    point for `rlx train moppo` (pass `--weights` for another preference or d)."""
    return MOPPOConfig(**{"weights": (0.5, 0.5), **overrides})
