"""Proximal Policy Optimization, discrete and continuous, as an rlx agent.

One `update` = collect `num_steps` steps from `num_envs` envs, compute
truncation-aware GAE, then `update_epochs` passes of `num_minibatches` minibatch
steps. The policy loss is written in mirror-learning form,

    L_pi = -mean(r·A - D(r, A)),   r = π_new(a|s) / π_old(a|s),

with PPO's drift D = ReLU((r - clip(r, 1-ε, 1+ε))·A), which equals the familiar
clipped surrogate -mean(min(r·A, clip(r)·A)).

The pieces are module-level functions that `make_agent` composes, and three of them
can be replaced by passing a function: `advantages` (GAE by default), `drift` (PPO's
by default; `rlx.agents.meta.drifts` passes learned ones) and `minibatching` (shuffled
samples by default; brax's recomputed segment GAE is `segment_minibatching`).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from rlx import distributions as D
from rlx import rollout
from rlx.config import config, static, static_part, traced
from rlx.envs.check import check_interface
from rlx.envs.wrappers import EpisodeStats, episode_summary, is_discrete
from rlx.networks import ACTIVATIONS, KERNEL_INITS, CategoricalActor, Critic, GaussianActor
from rlx.returns import gae
from rlx.running_stats import RunningStats, init_stats, normalize, update_stats
from rlx.types import Agent

ACTION_DISTS = ("auto", "categorical", "gaussian", "tanh_gaussian")
# drift name -> check(kind, params, where): filled by the packages that bring drifts
# (rlx.agents.meta.drifts), so a config with bad drift parameters fails when it is made.
DRIFT_CHECKS: dict[str, Any] = {}


@config
class PPOConfig:
    """PPO settings. Defaults are PureJaxRL's CartPole settings, tuned for 4 envs: with
    many more envs at the same step budget there are fewer updates and CartPole is
    not solved (see `brax_config` for a many-env continuous-control setting)."""

    num_envs: int = static(4, "parallel environments per member", ge=1)
    num_steps: int = static(128, "env steps per env in one update", ge=1)
    total_steps: int = static(500_000, "env steps per member in a full run", ge=1)
    update_epochs: int = static(4, "passes over each batch", ge=1)
    num_minibatches: int = static(4, "minibatches per pass; must divide num_envs*num_steps", ge=1)
    hidden: tuple = static((64, 64), "actor hidden layer widths", ge=1)
    critic_hidden: tuple = static((64, 64), "critic hidden layer widths", ge=1)
    activation: str = static("tanh", "hidden activation", choices=tuple(ACTIVATIONS))
    kernel_init: str = static("orthogonal", "weight init of every layer", choices=KERNEL_INITS)
    action_dist: str = static("auto", "categorical for discrete; gaussian or tanh_gaussian", choices=ACTION_DISTS)
    state_dependent_std: bool = static(False, "Gaussian scale as a network head, not one vector")
    init_log_std: float = static(0.0, "initial log standard deviation of Gaussian policies")
    anneal_lr: bool = static(True, "linearly decay the learning rate to 0")
    normalize_obs: bool = static(False, "running observation normalisation")
    obs_clip: float = static(10.0, "normalised observations are clipped to ±obs_clip (inf: no clip)", gt=0, finite=False)
    stats_first: bool = static(
        False, "update observation statistics from the new rollout before learning on it (brax)"
    )
    normalize_advantages: bool = static(True, "standardise advantages per minibatch")
    gae_segment: int = static(
        0, "cut the GAE trace every this many steps and bootstrap from V there (brax: its unroll of 5); 0 = never", ge=0
    )
    recompute_gae: bool = static(
        False, "recompute GAE in every minibatch with the current critic, on whole gae_segment unrolls (brax)"
    )
    clip_value: bool = static(True, "PPO value clipping (PureJaxRL does it; without it 3 of 8 CartPole seeds stall)")

    lr: float = traced(2.5e-4, "Adam learning rate", gt=0)
    gamma: float = traced(0.99, "discount", gt=0, le=1)
    gae_lambda: float = traced(0.95, "GAE λ", ge=0, le=1)
    clip_eps: float = traced(0.2, "ratio clip ε", gt=0)
    ent_coef: float = traced(0.01, "entropy bonus", ge=0)
    vf_coef: float = traced(0.5, "value loss weight", ge=0)
    vf_clip_eps: float = traced(0.2, "value clip (with clip_value)", gt=0)
    max_grad_norm: float = traced(0.5, "global gradient-norm clip", gt=0)
    adam_eps: float = traced(1e-5, "Adam's ε (PureJaxRL 1e-5; brax and optax 1e-8)", gt=0)
    reward_scale: float = traced(1.0, "rewards are multiplied by this", gt=0)
    drift: str = static(
        "ppo", "policy drift D(r, A): ppo, or a kind of rlx.agents.meta.drifts (e.g. `rlx train dpo`), built with its make_agent"
    )
    drift_params: Any = traced(None, "parameters of the drift, a pytree read by the drift function; None for ppo")

    def check(self) -> None:
        if self.drift in DRIFT_CHECKS:
            DRIFT_CHECKS[self.drift](self.drift, self.drift_params, "PPOConfig.drift_params")
        batch = self.num_envs * self.num_steps
        if batch % self.num_minibatches:
            divisors = [d for d in range(1, min(batch, 64) + 1) if batch % d == 0]
            raise ValueError(
                f"PPOConfig.num_minibatches = {self.num_minibatches} is invalid: it must divide "
                f"num_envs*num_steps = {batch}; accepted values include {divisors}."
            )
        if self.gae_segment and self.num_steps % self.gae_segment:
            raise ValueError(
                f"PPOConfig.gae_segment = {self.gae_segment} is invalid: it must be 0 or divide "
                f"num_steps = {self.num_steps}."
            )
        if self.recompute_gae and not self.gae_segment:
            raise ValueError(
                "PPOConfig.recompute_gae = True needs gae_segment > 0: minibatches are made of "
                "whole segments so that GAE can be recomputed inside them."
            )
        if self.recompute_gae and (batch // max(self.gae_segment, 1)) % self.num_minibatches:
            raise ValueError(
                f"PPOConfig.num_minibatches = {self.num_minibatches} is invalid with recompute_gae: it "
                f"must divide the number of segments num_envs*num_steps/gae_segment = "
                f"{batch // self.gae_segment}."
            )
        if self.total_steps < batch:
            raise ValueError(
                f"PPOConfig.total_steps = {self.total_steps} is invalid: it must be >= "
                f"num_envs*num_steps = {batch} (one update)."
            )

    @property
    def num_updates(self) -> int:
        return self.total_steps // (self.num_envs * self.num_steps)


def brax_config(**overrides: Any) -> PPOConfig:
    """brax.training's PPO defaults in our terms. brax collects 16 unrolls of 5 steps from
    2048 envs per training step (163,840 samples) and takes 4 x 32 minibatch steps on
    them; here that is 2048 envs x 80 steps. Like brax, no value clipping (with reward
    scaling 10 the value targets reach ~300, and a 0.2 clip starves the critic), no
    gradient clipping, Adam ε 1e-8, lecun-uniform init, an initial scale of softplus(0),
    unclipped normalised observations, observation statistics updated from each rollout
    before learning on it, and GAE on 5-step segments recomputed in every minibatch with
    the current critic. With only 6 updates in 1e6 steps the last matters most: frozen
    advantages from the first update's untrained critic steer 128 gradient steps."""
    base = dict(
        num_envs=2048, num_steps=80, total_steps=1_000_000, update_epochs=4, num_minibatches=32,
        hidden=(32, 32, 32, 32), critic_hidden=(256, 256, 256, 256, 256), activation="silu",
        action_dist="tanh_gaussian", state_dependent_std=True, normalize_obs=True, anneal_lr=False,
        clip_value=False, lr=3e-4, gamma=0.97, ent_coef=1e-2, reward_scale=10.0, max_grad_norm=1e9,
        adam_eps=1e-8, obs_clip=float("inf"), stats_first=True, kernel_init="lecun_uniform", gae_segment=5,
        recompute_gae=True,
        init_log_std=float(np.log(np.log(2.0))),  # brax's scale softplus(0) + 0.001
    )  # fmt: skip
    base.update(overrides)
    return PPOConfig(**base)


@struct.dataclass
class PPOParams:
    """PPO's parameters: actor, critic and the observation statistics."""

    actor: Any
    critic: Any
    obs_stats: RunningStats


@struct.dataclass
class PPOState:
    """PPO's train state for one member; the env batch is `[B]`."""

    params: PPOParams
    opt_state: Any
    env_state: Any  # [B] batched env states (with episode statistics)
    obs: jax.Array  # [B, *obs_shape]
    key: jax.Array
    update_step: jax.Array  # int32, updates done so far
    env_steps: jax.Array  # int32, env steps done so far (this member)


class Transition(NamedTuple):
    """One rollout, time-major: every field is `[T, B, ...]`."""

    obs: jax.Array  # [T, B, *obs_shape]
    action: jax.Array  # [T, B] or [T, B, D] (pre-squash sample for tanh_gaussian)
    logp: jax.Array  # [T, B]
    reward: jax.Array  # [T, B]
    terminated: jax.Array  # [T, B]
    done: jax.Array  # [T, B]: terminated or truncated
    final_obs: jax.Array  # [T, B, *obs_shape]: last obs of the episode that ended here


def ppo_drift(ratio: jax.Array, adv: jax.Array, clip_eps: jax.Array) -> jax.Array:
    """PPO's drift: ReLU((r - clip(r, 1-ε, 1+ε))·A). Zero with zero gradient at r = 1.
    Elementwise: `ratio`, `adv` any shape (`[B]` for a minibatch), `clip_eps` a scalar."""
    return jax.nn.relu((ratio - jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)) * adv)


def ppo_drift_fn(ratio: jax.Array, adv: jax.Array, c: PPOConfig, progress: jax.Array) -> jax.Array:
    """PPO's drift as an injected `drift(ratio [N], adv [N], c, progress) -> [N]`."""
    return ppo_drift(ratio, adv, c.clip_eps)


# -- networks and the policy ---------------------------------------------------------------
class PPONetworks(NamedTuple):
    """The modules and the static facts about the policy that every piece needs."""

    actor: Any  # CategoricalActor or GaussianActor
    critic: Any  # Critic (reward_dim heads for vector rewards)
    dist: str  # categorical | gaussian | tanh_gaussian
    low: Any  # [A] action bounds (continuous actions), else None
    high: Any
    normalize_obs: bool
    obs_clip: float


def make_networks(env: Any, cfg: PPOConfig) -> PPONetworks:
    """The actor and critic for `env`'s spaces; one line naming the field for a bad fit."""
    act_space = env.action_space(env.default_params)
    discrete = is_discrete(act_space)
    dist = cfg.action_dist
    if dist == "auto":
        dist = "categorical" if discrete else "gaussian"
    if discrete != (dist == "categorical"):
        kind = "discrete" if discrete else "continuous"
        raise ValueError(
            f"PPOConfig.action_dist = {cfg.action_dist!r} does not fit {env.name}'s {kind} actions: "
            f"use {'categorical' if discrete else 'gaussian or tanh_gaussian'} (or auto)."
        )
    if discrete:
        actor = CategoricalActor(act_space.n, cfg.hidden, cfg.activation, cfg.kernel_init)
        low = high = None
    else:
        actor = GaussianActor(
            act_space.shape[0], cfg.hidden, cfg.activation, cfg.state_dependent_std, cfg.init_log_std
        )
        low, high = jnp.asarray(act_space.low), jnp.asarray(act_space.high)
    critic = Critic(cfg.critic_hidden, cfg.activation, reward_dim=getattr(env, "reward_dim", None))
    return PPONetworks(actor, critic, dist, low, high, cfg.normalize_obs, cfg.obs_clip)


def observe(nets: PPONetworks, params: PPOParams, obs: jax.Array) -> jax.Array:
    """What the networks see: `obs` `[..., *obs_shape]` normalised with the running
    statistics, if enabled; the same shape."""
    return normalize(params.obs_stats, obs, nets.obs_clip) if nets.normalize_obs else obs


def sample(nets: PPONetworks, actor_params: Any, obs: jax.Array, key: jax.Array) -> tuple:
    """Batched `obs [B, *obs]` -> (raw action, env action, log-prob `[B]`). The raw action
    of a tanh-Gaussian policy is the pre-squash sample its log-prob is computed from."""
    out = nets.actor.apply(actor_params, obs, 1)
    if nets.dist == "categorical":
        a = D.categorical_sample(key, out)
        return a, a, D.categorical_log_prob(out, a)
    mean, log_std = out
    low, high = nets.low, nets.high
    if nets.dist == "gaussian":
        a = D.gaussian_sample(key, mean, log_std)
        return a, jnp.clip(a, low, high), D.gaussian_log_prob(mean, log_std, a)
    squashed, u = D.tanh_gaussian_sample(key, mean, log_std)
    return u, low + (squashed + 1.0) * 0.5 * (high - low), D.tanh_gaussian_log_prob(mean, log_std, u)


def log_prob_and_entropy(nets: PPONetworks, actor_params: Any, obs, raw_action, noise) -> tuple:
    """`(log π(raw_action | obs), entropy)`, both `[N]`; `noise [N, A]` feeds the one-sample
    entropy estimate of a tanh-Gaussian policy (unused otherwise)."""
    out = nets.actor.apply(actor_params, obs, 1)
    if nets.dist == "categorical":
        return D.categorical_log_prob(out, raw_action), D.categorical_entropy(out)
    mean, log_std = out
    if nets.dist == "gaussian":
        return D.gaussian_log_prob(mean, log_std, raw_action), D.gaussian_entropy(log_std)
    # The squashed distribution has no closed-form entropy: H = H_gauss + E[log|det J(u)|],
    # estimated with one reparameterised sample u = mean + std * noise. The Gaussian
    # entropy alone would reward ever wider scales, which tanh turns into bang-bang actions.
    u = mean + jnp.exp(log_std) * noise
    entropy = D.gaussian_entropy(log_std) + D.tanh_log_det_jacobian(u)
    return D.tanh_gaussian_log_prob(mean, log_std, raw_action), entropy


def act(nets: PPONetworks, params: PPOParams, obs: jax.Array, key: jax.Array, deterministic: bool = True):
    """One unbatched observation `[*obs_shape]` -> one env action (an integer scalar, or
    `[D]`); the mode when `deterministic`."""
    out = nets.actor.apply(params.actor, observe(nets, params, obs[None]), 1)
    if nets.dist == "categorical":
        return jnp.argmax(out[0]) if deterministic else D.categorical_sample(key, out[0])
    mean, log_std = out[0][0], out[1][0]
    u = mean if deterministic else D.gaussian_sample(key, mean, log_std)
    if nets.dist == "gaussian":
        return jnp.clip(u, nets.low, nets.high)
    return nets.low + (jnp.tanh(u) + 1.0) * 0.5 * (nets.high - nets.low)


def make_optimizer(cfg: PPOConfig, c: PPOConfig) -> optax.GradientTransformation:
    """Gradient clipping then Adam, with the learning rate annealed per update if asked."""
    if cfg.anneal_lr:
        per_update = cfg.update_epochs * cfg.num_minibatches
        num_updates = cfg.num_updates

        def lr(count):
            return c.lr * (1.0 - (count // per_update) / num_updates)
    else:
        lr = c.lr
    return optax.chain(optax.clip_by_global_norm(c.max_grad_norm), optax.adam(lr, eps=c.adam_eps))


# -- collect and advantages ----------------------------------------------------------------
def collect(nets: PPONetworks, params: PPOParams, env: Any, env_params: Any, carry: tuple, num_steps: int,
            reward_scale: Any) -> tuple[tuple, Transition]:  # fmt: skip
    """`num_steps` steps of the current policy from `carry = (env_state, obs, key)`.
    Returns the new carry and a `Transition` with leaves `[T, B, ...]`, rewards scaled."""

    def policy(obs, key):
        raw, action, logp = sample(nets, params.actor, observe(nets, params, obs), key)
        return action, (raw, logp)

    def keep(step: rollout.Step) -> Transition:
        raw, logp = step.extras
        done = step.terminated | step.truncated
        return Transition(step.obs, raw, logp, step.reward * reward_scale, step.terminated, done, step.final_obs)

    return rollout.collect(env, env_params, carry, policy, num_steps, keep)


def critic_values(nets: PPONetworks, params: PPOParams, traj: Transition, last_obs: jax.Array) -> tuple:
    """`(values [T+1, B(, d)], final_values [T, B(, d)])`: V of every visited state and of
    the state after the last step, and V of the true final state of episodes that ended
    at each step (for bootstrapping on truncation)."""
    all_obs = jnp.concatenate([traj.obs, last_obs[None]], 0)
    values = nets.critic.apply(params.critic, observe(nets, params, all_obs), 2)
    final_values = nets.critic.apply(params.critic, observe(nets, params, traj.final_obs), 2)
    return values, final_values


def gae_advantages(traj: Transition, values: jax.Array, final_values: jax.Array, c: PPOConfig,
                   segment: int = 0) -> tuple[jax.Array, jax.Array]:  # fmt: skip
    """Truncation-aware GAE: `(advantages, value targets)`, both `[T, B(, d)]`.

    The default `advantages` piece; any `advantages(traj, values, final_values, c)` with
    this signature can replace it. With `segment > 0` the λ-trace is also cut every
    `segment` steps, each segment's last step bootstrapping from V(next obs) (brax's
    GAE on short unrolls). Vector values (`[..., d]`) get GAE per objective.
    """
    terminated, done = traj.terminated, traj.done
    if values.ndim > done.ndim:  # vector rewards: the episode flags broadcast over objectives
        terminated, done = terminated[..., None], done[..., None]
    next_values = jnp.where(done, final_values, values[1:])
    cut = done
    if segment:
        steps = done.shape[0]
        seg_end = (jnp.arange(steps) % segment) == segment - 1
        cut = cut | seg_end.reshape((-1,) + (1,) * (done.ndim - 1))
    return gae(traj.reward, values[:-1], next_values, terminated, cut, c.gamma, c.gae_lambda)


# -- the loss --------------------------------------------------------------------------------
def ppo_loss(nets: PPONetworks, cfg: PPOConfig, c: PPOConfig, params: PPOParams, actor_critic: tuple,
             mb: dict, drift: Any, progress: jax.Array) -> tuple[jax.Array, dict]:  # fmt: skip
    """The clipped-surrogate loss in mirror-learning form on one minibatch `mb` (leaves
    `[N, ...]`: obs, action, logp, adv, target, value, noise). `params` gives the
    observation statistics; `actor_critic` is differentiated. Returns `(loss, stats)`."""
    actor_p, critic_p = actor_critic
    obs = observe(nets, params, mb["obs"])
    logp, entropy = log_prob_and_entropy(nets, actor_p, obs, mb["action"], mb["noise"])
    log_ratio = logp - mb["logp"]
    ratio = jnp.exp(log_ratio)
    a = mb["adv"]
    if cfg.normalize_advantages:
        a = (a - a.mean()) / (a.std() + 1e-8)
    d = drift(ratio, a, c, progress)
    policy_loss = -jnp.mean(ratio * a - d)
    v = nets.critic.apply(critic_p, obs, 1)
    value_loss = 0.5 * (v - mb["target"]) ** 2
    if cfg.clip_value:
        v_clipped = mb["value"] + jnp.clip(v - mb["value"], -c.vf_clip_eps, c.vf_clip_eps)
        value_loss = jnp.maximum(value_loss, 0.5 * (v_clipped - mb["target"]) ** 2)
    value_loss = value_loss.mean()
    entropy = entropy.mean()
    loss = policy_loss + c.vf_coef * value_loss - c.ent_coef * entropy
    stats = dict(
        loss=loss, policy_loss=policy_loss, value_loss=value_loss, entropy=entropy,
        approx_kl=jnp.mean((ratio - 1.0) - log_ratio),
        clip_frac=jnp.mean(jnp.abs(ratio - 1.0) > c.clip_eps),
    )  # fmt: skip
    return loss, stats


# -- minibatching and the learn step -----------------------------------------------------------
class Minibatching(NamedTuple):
    """How one rollout's data becomes minibatches.

    arrange(data, traj, last_obs) -> units: once per update; `data` has leaves `[T, B, ...]`.
    minibatches(units, key) -> leaves `[num_minibatches, ...]`: once per epoch.
    prepare(params, actor_critic, mb, c) -> mb: inside the differentiated loss, before it.
    """

    arrange: Any
    minibatches: Any
    prepare: Any


def sample_minibatching(num_minibatches: int) -> Minibatching:
    """Samples shuffled over the whole `T*B` batch (PureJaxRL, CleanRL)."""

    def arrange(data, traj, last_obs):
        return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), data)

    def minibatches(units, key):
        perm = jax.random.permutation(key, jax.tree.leaves(units)[0].shape[0])
        return jax.tree.map(lambda x: x[perm].reshape((num_minibatches, -1) + x.shape[1:]), units)

    return Minibatching(arrange, minibatches, lambda params, actor_critic, mb, c: mb)


def segment_minibatching(nets: PPONetworks, segment: int, num_minibatches: int, scalarize: Any = None) -> Minibatching:
    """brax's order: minibatches of whole `segment`-step unrolls, and GAE recomputed in
    every minibatch with the current critic (`scalarize` as in `make_agent`)."""

    def arrange(data, traj, last_obs):
        all_obs = jnp.concatenate([traj.obs, last_obs[None]], 0)
        flags = traj.done.reshape(traj.done.shape + (1,) * (traj.obs.ndim - 2))
        next_obs = jnp.where(flags, traj.final_obs, all_obs[1:])
        data = dict(data, next_obs=next_obs, reward=traj.reward, terminated=traj.terminated, done=traj.done)
        for name in ("adv", "target"):  # recomputed in every minibatch
            del data[name]

        def to_segments(x):  # [T, B, ...] -> [k, T/k * B, ...]
            x = x.reshape((x.shape[0] // segment, segment) + x.shape[1:])
            return jnp.swapaxes(x, 0, 1).reshape((segment, -1) + x.shape[3:])

        return jax.tree.map(to_segments, data)

    def minibatches(units, key):  # -> [num_minibatches, k, segments per minibatch, ...]
        perm = jax.random.permutation(key, jax.tree.leaves(units)[0].shape[1])

        def take(x):
            x = x[:, perm].reshape((segment, num_minibatches, -1) + x.shape[2:])
            return jnp.swapaxes(x, 0, 1)

        return jax.tree.map(take, units)

    def prepare(params, actor_critic, mb, c):
        """GAE on the `[k, S]` segments with the current critic: the minibatch flattened to
        `[k*S]` with fresh `adv` and `target` ("value" stays the rollout's, for value clipping)."""
        critic_p = actor_critic[1]
        v_all = nets.critic.apply(critic_p, observe(nets, params, mb["obs"]), 2)
        v_next = nets.critic.apply(critic_p, observe(nets, params, mb["next_obs"]), 2)
        v_all, v_next = jax.lax.stop_gradient(v_all), jax.lax.stop_gradient(v_next)
        term, cut = mb["terminated"], mb["done"].at[-1].set(True)
        if scalarize is not None:
            term, cut = term[..., None], cut[..., None]
        adv, target = gae(mb["reward"], v_all, v_next, term, cut, c.gamma, c.gae_lambda)
        if scalarize is not None:
            adv = scalarize(adv, c)
        mb = dict(mb, adv=adv, target=target)
        for k in ("next_obs", "reward", "terminated", "done"):
            del mb[k]
        return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), mb)

    return Minibatching(arrange, minibatches, prepare)


def learn_step(loss: Any, optimizer: Any, actor_critic: tuple, opt_state: Any, key: jax.Array, units: Any,
               minibatches: Any, epochs: int) -> tuple:  # fmt: skip
    """`epochs` passes of one gradient step per minibatch. `loss(actor_critic, mb) ->
    (loss, stats)`. Returns `((actor_critic, opt_state, key), stats [epochs, M])`."""

    def epoch(carry, _):
        actor_critic, opt_state, key = carry
        key, k_perm = jax.random.split(key)

        def minibatch_step(carry, mb):
            actor_critic, opt_state = carry
            grads, stats = jax.grad(loss, has_aux=True)(actor_critic, mb)
            updates, opt_state = optimizer.update(grads, opt_state, actor_critic)
            return (optax.apply_updates(actor_critic, updates), opt_state), stats

        (actor_critic, opt_state), stats = jax.lax.scan(
            minibatch_step, (actor_critic, opt_state), minibatches(units, k_perm)
        )
        return (actor_critic, opt_state, key), stats

    return jax.lax.scan(epoch, (actor_critic, opt_state, key), None, epochs)


# -- the agent ---------------------------------------------------------------------------------
def default_drift(cfg: PPOConfig) -> Any:
    """PPO's own drift; a config naming another one must be given its function."""
    if cfg.drift != "ppo":
        raise ValueError(
            f"PPOConfig.drift = {cfg.drift!r} needs its drift function: build the agent with "
            "rlx.agents.meta.drifts.make_agent(env, cfg) (`rlx train dpo`), or pass drift=."
        )
    if cfg.drift_params is not None:
        raise ValueError(
            "PPOConfig.drift_params must be None for PPO's drift (it uses clip_eps); pass the drift "
            "that reads them as drift=."
        )
    return ppo_drift_fn


def init_state(nets: PPONetworks, env: Any, obs_shape: tuple, cfg: PPOConfig, c: PPOConfig, key: jax.Array,
               env_params: Any) -> PPOState:  # fmt: skip
    """A fresh train state: new networks, zero observation statistics, `num_envs` reset envs."""
    key, k_actor, k_critic, k_env = jax.random.split(key, 4)
    dummy = jnp.zeros((1,) + obs_shape, jnp.float32)
    params = PPOParams(
        actor=nets.actor.init(k_actor, dummy, 1), critic=nets.critic.init(k_critic, dummy, 1),
        obs_stats=init_stats(obs_shape),
    )  # fmt: skip
    obs, env_state = jax.vmap(env.reset, (0, None))(jax.random.split(k_env, cfg.num_envs), env_params)
    opt_state = make_optimizer(cfg, c).init((params.actor, params.critic))
    zero = jnp.zeros((), jnp.int32)
    return PPOState(params, opt_state, env_state, obs, key, zero, zero)


def default_minibatching(nets: PPONetworks, cfg: PPOConfig, scalarize: Any = None) -> Minibatching:
    """Shuffled samples, or brax's segments with GAE recomputed per epoch (`recompute_gae`)."""
    if cfg.recompute_gae:
        return segment_minibatching(nets, cfg.gae_segment, cfg.num_minibatches, scalarize)
    return sample_minibatching(cfg.num_minibatches)


def make_agent(env: Any, cfg: PPOConfig, scalarize: Any = None, drift: Any = None, advantages: Any = None,
               minibatching: Minibatching | None = None) -> Agent:  # fmt: skip
    """Build PPO for `env` from the pieces above; the functions close over `cfg`'s static
    fields. Each keyword replaces one piece:

    scalarize(adv [T, B, d], c) -> [T, B]: for a vector-reward env (`env.reward_dim = d`):
        the critic has one head per objective and GAE runs per objective
        (`rlx.agents.morl.moppo` builds on this).
    drift(ratio [N], adv [N], c, progress) -> [N]: D(r, A) (default PPO's clip; progress
        is n/N, the training progress). Other drifts: `rlx.agents.meta.drifts.make_agent`.
    advantages(traj, values [T+1, B], final_values [T, B], c) -> (adv, targets) `[T, B]`:
        default `gae_advantages` (cut every `gae_segment` steps when that is set).
    minibatching: a `Minibatching` (default shuffled samples; `segment_minibatching`
        with `recompute_gae`).
    """
    check_interface(env, where="ppo.make_agent")  # the env's methods, spaces and observation, before any jax runs
    reward_dim = getattr(env, "reward_dim", None)
    if bool(reward_dim) != (scalarize is not None):
        raise ValueError(
            f"{getattr(env, 'name', env)} has reward_dim={reward_dim}: PPO needs `scalarize` exactly "
            "when rewards are vectors (use rlx.agents.morl.moppo for multi-objective envs)."
        )
    drift = default_drift(cfg) if drift is None else drift
    env = EpisodeStats(env)
    nets = make_networks(env, cfg)
    if advantages is None:
        advantages = functools.partial(gae_advantages, segment=cfg.gae_segment)
    if minibatching is None:
        minibatching = default_minibatching(nets, cfg, scalarize)
    steps_per_update = cfg.num_envs * cfg.num_steps
    obs_shape = env.observation_space(env.default_params).shape

    def init(key, c: PPOConfig, env_params) -> PPOState:
        return init_state(nets, env, obs_shape, cfg, c, key, env_params)

    def update(state: PPOState, c: PPOConfig, env_params):
        params = state.params
        carry = (state.env_state, state.obs, state.key)
        (env_state, last_obs, key), traj = collect(nets, params, env, env_params, carry, cfg.num_steps, c.reward_scale)
        if cfg.normalize_obs and cfg.stats_first:
            # brax's order: the statistics take in this rollout before learning on it. The
            # importance ratios still use the behaviour log-probs from the rollout itself.
            params = params.replace(obs_stats=update_stats(params.obs_stats, traj.obs))
        values, final_values = critic_values(nets, params, traj, last_obs)
        adv, targets = advantages(traj, values, final_values, c)
        if scalarize is not None:
            adv = scalarize(adv, c)  # [T, B, d] -> [T, B]; the value targets stay per objective
        # Training progress n/N, the extra input of temporally-aware drifts.
        progress = state.update_step.astype(jnp.float32) / cfg.num_updates
        noise = jnp.zeros(traj.logp.shape)  # only the tanh-Gaussian entropy estimate uses noise
        if nets.dist == "tanh_gaussian":
            key, k_noise = jax.random.split(key)
            noise = jax.random.normal(k_noise, traj.action.shape)
        data = dict(obs=traj.obs, action=traj.action, logp=traj.logp, adv=adv, target=targets, value=values[:-1],
                    noise=noise)  # fmt: skip
        units = minibatching.arrange(data, traj, last_obs)

        def loss(actor_critic, mb):
            mb = minibatching.prepare(params, actor_critic, mb, c)
            return ppo_loss(nets, cfg, c, params, actor_critic, mb, drift, progress)

        (actor_critic, opt_state, key), stats = learn_step(
            loss, make_optimizer(cfg, c), (params.actor, params.critic), state.opt_state, key, units,
            minibatching.minibatches, cfg.update_epochs,
        )  # fmt: skip
        # By default observation statistics advance after learning, so every log-prob and
        # value of this update was computed under the statistics the rollout used.
        obs_stats = params.obs_stats
        if cfg.normalize_obs and not cfg.stats_first:
            obs_stats = update_stats(obs_stats, traj.obs)
        new_params = PPOParams(actor_critic[0], actor_critic[1], obs_stats)
        env_steps = state.env_steps + steps_per_update
        new_state = PPOState(new_params, opt_state, env_state, last_obs, key, state.update_step + 1, env_steps)
        episode_return, episodes = episode_summary(env_state)
        metrics = {k: v.mean() for k, v in stats.items()}
        # Episode statistics are kept on the env's own (unscaled) rewards.
        metrics.update(env_steps=env_steps, episode_return=episode_return, episodes=episodes)
        return new_state, metrics

    return Agent(
        init=init,
        update=update,
        act=lambda params, obs, key, c, deterministic=True: act(nets, params, obs, key, deterministic),
        policy_params=lambda s: s.params,
        num_updates=lambda c: c.num_updates,
        static=static_part(cfg),
    )
