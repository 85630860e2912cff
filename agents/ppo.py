"""Proximal Policy Optimization, discrete and continuous, as an rlx agent.

One `update` = collect `num_steps` steps from `num_envs` envs, compute
truncation-aware GAE, then `update_epochs` passes of `num_minibatches` minibatch
steps. The policy loss is written in mirror-learning form,

    L_pi = -mean(r·A - D(r, A)),   r = π_new(a|s) / π_old(a|s),

with PPO's drift D = ReLU((r - clip(r, 1-ε, 1+ε))·A), which equals the familiar
clipped surrogate -mean(min(r·A, clip(r)·A)).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from rlx import distributions as D
from rlx.config import config, static, traced
from rlx.envs.wrappers import EpisodeStats, episode_summary, is_discrete
from rlx.networks import ACTIVATIONS, KERNEL_INITS, CategoricalActor, Critic, GaussianActor
from rlx.returns import gae
from rlx.running_stats import RunningStats, init_stats, normalize, update_stats
from rlx.types import Agent

ACTION_DISTS = ("auto", "categorical", "gaussian", "tanh_gaussian")
DRIFTS = ("ppo", "dpo", "lpo", "lpo_ppo_init", "ta_lpo", "ta_lpo_ppo_init")  # see rlx.agents.meta.drifts


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
    drift: str = static("ppo", "policy drift D(r, A) (rlx.agents.meta.drifts)", choices=DRIFTS)
    drift_params: Any = traced(None, "drift parameters, a pytree (rlx.agents.meta.drifts.init_params); None for ppo")

    def check(self) -> None:
        from rlx.agents.meta.drifts import check_params

        check_params(self.drift, self.drift_params, "PPOConfig.drift_params")
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
    actor: Any
    critic: Any
    obs_stats: RunningStats


@struct.dataclass
class PPOState:
    params: PPOParams
    opt_state: Any
    env_state: Any  # [B] batched env states (with episode statistics)
    obs: jax.Array  # [B, *obs_shape]
    key: jax.Array
    update_step: jax.Array  # int32, updates done so far
    env_steps: jax.Array  # int32, env steps done so far (this member)


class Transition(NamedTuple):
    obs: jax.Array  # [T, B, *obs_shape]
    action: jax.Array  # [T, B] or [T, B, D] (pre-squash sample for tanh_gaussian)
    logp: jax.Array  # [T, B]
    reward: jax.Array  # [T, B]
    terminated: jax.Array  # [T, B]
    done: jax.Array  # [T, B]: terminated or truncated
    final_obs: jax.Array  # [T, B, *obs_shape]: last obs of the episode that ended here


def ppo_drift(ratio: jax.Array, adv: jax.Array, clip_eps: jax.Array) -> jax.Array:
    """PPO's drift: ReLU((r - clip(r, 1-ε, 1+ε))·A). Zero with zero gradient at r = 1."""
    return jax.nn.relu((ratio - jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)) * adv)


def make_agent(env: Any, cfg: PPOConfig, scalarize: Any = None) -> Agent:
    """Build PPO for `env`; the returned functions close over `cfg`'s static fields.

    For a vector-reward env (`env.reward_dim = d`), pass `scalarize(adv, c) -> [T, B]`,
    which maps per-objective advantages `adv: [T, B, d]` to the scalar advantage the
    policy learns from; the critic then has one value head per objective and GAE runs
    per objective (`rlx.agents.morl.moppo` builds on this).
    """
    reward_dim = getattr(env, "reward_dim", None)
    if bool(reward_dim) != (scalarize is not None):
        raise ValueError(
            f"{getattr(env, 'name', env)} has reward_dim={reward_dim}: PPO needs `scalarize` exactly "
            "when rewards are vectors (use rlx.agents.morl.moppo for multi-objective envs)."
        )
    from rlx.agents.meta.drifts import drift as meta_drift

    env = EpisodeStats(env)
    obs_space = env.observation_space(env.default_params)
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
    else:
        actor = GaussianActor(
            act_space.shape[0], cfg.hidden, cfg.activation, cfg.state_dependent_std, cfg.init_log_std
        )
    critic = Critic(cfg.critic_hidden, cfg.activation, reward_dim=reward_dim)
    num_updates = cfg.num_updates
    steps_per_update = cfg.num_envs * cfg.num_steps
    batch_size = steps_per_update
    if not discrete:
        low, high = jnp.asarray(act_space.low), jnp.asarray(act_space.high)

    # -- policy helpers ---------------------------------------------------------
    def sample(actor_params, obs, key):
        """Batched `[B, *obs]` -> (raw action, env action, log-prob)."""
        out = actor.apply(actor_params, obs, 1)
        if dist == "categorical":
            a = D.categorical_sample(key, out)
            return a, a, D.categorical_log_prob(out, a)
        mean, log_std = out
        if dist == "gaussian":
            a = D.gaussian_sample(key, mean, log_std)
            return a, jnp.clip(a, low, high), D.gaussian_log_prob(mean, log_std, a)
        squashed, u = D.tanh_gaussian_sample(key, mean, log_std)
        return u, low + (squashed + 1.0) * 0.5 * (high - low), D.tanh_gaussian_log_prob(mean, log_std, u)

    def log_prob_and_entropy(actor_params, obs, raw_action, noise):
        out = actor.apply(actor_params, obs, 1)
        if dist == "categorical":
            return D.categorical_log_prob(out, raw_action), D.categorical_entropy(out)
        mean, log_std = out
        if dist == "gaussian":
            return D.gaussian_log_prob(mean, log_std, raw_action), D.gaussian_entropy(log_std)
        # The squashed distribution has no closed-form entropy: H = H_gauss + E[log|det J(u)|],
        # estimated with one reparameterised sample u = mean + std * noise. The Gaussian
        # entropy alone would reward ever wider scales, which tanh turns into bang-bang actions.
        u = mean + jnp.exp(log_std) * noise
        entropy = D.gaussian_entropy(log_std) + D.tanh_log_det_jacobian(u)
        return D.tanh_gaussian_log_prob(mean, log_std, raw_action), entropy

    def observe(params: PPOParams, obs):
        return normalize(params.obs_stats, obs, cfg.obs_clip) if cfg.normalize_obs else obs

    def make_optimizer(c: PPOConfig):
        if cfg.anneal_lr:
            per_update = cfg.update_epochs * cfg.num_minibatches

            def lr(count):
                return c.lr * (1.0 - (count // per_update) / num_updates)
        else:
            lr = c.lr
        return optax.chain(optax.clip_by_global_norm(c.max_grad_norm), optax.adam(lr, eps=c.adam_eps))

    # -- init --------------------------------------------------------------------
    def init(key, c: PPOConfig, env_params) -> PPOState:
        key, k_actor, k_critic, k_env = jax.random.split(key, 4)
        dummy = jnp.zeros((1,) + obs_space.shape, jnp.float32)
        params = PPOParams(
            actor=actor.init(k_actor, dummy, 1),
            critic=critic.init(k_critic, dummy, 1),
            obs_stats=init_stats(obs_space.shape),
        )
        obs, env_state = jax.vmap(env.reset, (0, None))(jax.random.split(k_env, cfg.num_envs), env_params)
        opt_state = make_optimizer(c).init((params.actor, params.critic))
        zero = jnp.zeros((), jnp.int32)
        return PPOState(params, opt_state, env_state, obs, key, zero, zero)

    # -- one update ----------------------------------------------------------------
    def update(state: PPOState, c: PPOConfig, env_params):
        params = state.params

        def env_step(carry, _):
            env_state, obs, key = carry
            key, k_act, k_env = jax.random.split(key, 3)
            raw, action, logp = sample(params.actor, observe(params, obs), k_act)
            keys = jax.random.split(k_env, cfg.num_envs)
            next_obs, env_state, reward, term, trunc, info = jax.vmap(
                env.step, (0, 0, 0, None)
            )(keys, env_state, action, env_params)
            tr = Transition(obs, raw, logp, reward * c.reward_scale, term, term | trunc, info["final_obs"])
            return (env_state, next_obs, key), tr

        (env_state, last_obs, key), traj = jax.lax.scan(
            env_step, (state.env_state, state.obs, state.key), None, cfg.num_steps
        )
        if cfg.normalize_obs and cfg.stats_first:
            # brax's order: the statistics take in this rollout before learning on it. The
            # importance ratios still use the behaviour log-probs from the rollout itself.
            params = params.replace(obs_stats=update_stats(params.obs_stats, traj.obs))

        # Values of every visited state, of the state after the last step, and of the
        # true final states of episodes that ended (for bootstrapping on truncation).
        all_obs = jnp.concatenate([traj.obs, last_obs[None]], 0)
        values = critic.apply(params.critic, observe(params, all_obs), 2)
        final_values = critic.apply(params.critic, observe(params, traj.final_obs), 2)
        terminated, done = traj.terminated, traj.done
        if scalarize is not None:  # vector rewards: the episode flags broadcast over objectives
            terminated, done = terminated[..., None], done[..., None]
        next_values = jnp.where(done, final_values, values[1:])
        cut = done
        if cfg.gae_segment:
            # brax computes GAE on short unrolls: each segment's last step bootstraps from
            # V(next obs) (already in next_values), and the λ-trace stops there.
            seg_end = (jnp.arange(cfg.num_steps) % cfg.gae_segment) == cfg.gae_segment - 1
            cut = cut | seg_end.reshape((-1,) + (1,) * (done.ndim - 1))
        adv, targets = gae(traj.reward, values[:-1], next_values, terminated, cut, c.gamma, c.gae_lambda)
        if scalarize is not None:
            adv = scalarize(adv, c)  # [T, B, d] -> [T, B]; the value targets stay per objective

        # Training progress n/N, the extra input of temporally-aware drifts.
        progress = state.update_step.astype(jnp.float32) / num_updates

        def segment_targets(critic_p, mb):
            """GAE on `[k, S]` segments with the current critic (brax's order): returns the
            minibatch flattened to `[k*S]` with fresh `adv` and `target`."""
            v_all = critic.apply(critic_p, observe(params, mb["obs"]), 2)
            v_next = critic.apply(critic_p, observe(params, mb["next_obs"]), 2)
            v_all, v_next = jax.lax.stop_gradient(v_all), jax.lax.stop_gradient(v_next)
            term, cut = mb["terminated"], mb["done"].at[-1].set(True)
            if scalarize is not None:
                term, cut = term[..., None], cut[..., None]
            adv, target = gae(mb["reward"], v_all, v_next, term, cut, c.gamma, c.gae_lambda)
            if scalarize is not None:
                adv = scalarize(adv, c)
            mb = dict(mb, adv=adv, target=target)  # "value" stays the rollout's, for value clipping
            for k in ("next_obs", "reward", "terminated", "done"):
                del mb[k]
            return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), mb)

        def loss_fn(actor_critic, mb):
            actor_p, critic_p = actor_critic
            if cfg.recompute_gae:
                mb = segment_targets(critic_p, mb)
            obs = observe(params, mb["obs"])
            logp, entropy = log_prob_and_entropy(actor_p, obs, mb["action"], mb["noise"])
            log_ratio = logp - mb["logp"]
            ratio = jnp.exp(log_ratio)
            a = mb["adv"]
            if cfg.normalize_advantages:
                a = (a - a.mean()) / (a.std() + 1e-8)
            if cfg.drift == "ppo":
                drift = ppo_drift(ratio, a, c.clip_eps)
            else:
                drift = meta_drift(cfg.drift, c.drift_params, ratio, a, c.clip_eps, progress)
            policy_loss = -jnp.mean(ratio * a - drift)
            v = critic.apply(critic_p, obs, 1)
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

        optimizer = make_optimizer(c)
        noise = jnp.zeros(traj.logp.shape)  # only the tanh-Gaussian entropy estimate uses noise
        if dist == "tanh_gaussian":
            key, k_noise = jax.random.split(key)
            noise = jax.random.normal(k_noise, traj.action.shape)
        data = dict(obs=traj.obs, action=traj.action, logp=traj.logp, adv=adv, target=targets, value=values[:-1], noise=noise)
        if cfg.recompute_gae:
            # Whole segments [k, num_segments]: the steps a segment needs to recompute GAE.
            k = cfg.gae_segment
            next_obs = jnp.where(
                traj.done.reshape(traj.done.shape + (1,) * (traj.obs.ndim - 2)), traj.final_obs, all_obs[1:]
            )
            data.update(next_obs=next_obs, reward=traj.reward, terminated=traj.terminated, done=traj.done)
            for name in ("adv", "target"):
                del data[name]

            def to_segments(x):  # [T, B, ...] -> [k, T/k * B, ...]
                x = x.reshape((cfg.num_steps // k, k) + x.shape[1:])
                return jnp.swapaxes(x, 0, 1).reshape((k, -1) + x.shape[3:])

            data = jax.tree.map(to_segments, data)
            num_units = batch_size // k

            def take(x, perm):  # -> [num_minibatches, k, segments per minibatch, ...]
                x = x[:, perm].reshape((k, cfg.num_minibatches, -1) + x.shape[2:])
                return jnp.swapaxes(x, 0, 1)
        else:
            data = jax.tree.map(lambda x: x.reshape((batch_size,) + x.shape[2:]), data)
            num_units = batch_size

            def take(x, perm):  # -> [num_minibatches, samples per minibatch, ...]
                return x[perm].reshape((cfg.num_minibatches, -1) + x.shape[1:])

        def epoch(carry, _):
            actor_critic, opt_state, key = carry
            key, k_perm = jax.random.split(key)
            perm = jax.random.permutation(k_perm, num_units)
            minibatches = jax.tree.map(lambda x: take(x, perm), data)

            def minibatch_step(carry, mb):
                actor_critic, opt_state = carry
                grads, stats = jax.grad(loss_fn, has_aux=True)(actor_critic, mb)
                updates, opt_state = optimizer.update(grads, opt_state, actor_critic)
                return (optax.apply_updates(actor_critic, updates), opt_state), stats

            (actor_critic, opt_state), stats = jax.lax.scan(minibatch_step, (actor_critic, opt_state), minibatches)
            return (actor_critic, opt_state, key), stats

        (actor_critic, opt_state, key), stats = jax.lax.scan(
            epoch, ((params.actor, params.critic), state.opt_state, key), None, cfg.update_epochs
        )
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

    # -- acting ----------------------------------------------------------------------
    def act(params: PPOParams, obs, key, c: PPOConfig, deterministic: bool = True):
        """One unbatched observation -> one env action."""
        out = actor.apply(params.actor, observe(params, obs[None]), 1)
        if dist == "categorical":
            return jnp.argmax(out[0]) if deterministic else D.categorical_sample(key, out[0])
        mean, log_std = out[0][0], out[1][0]
        u = mean if deterministic else D.gaussian_sample(key, mean, log_std)
        if dist == "gaussian":
            return jnp.clip(u, low, high)
        return low + (jnp.tanh(u) + 1.0) * 0.5 * (high - low)

    return Agent(
        init=init,
        update=update,
        act=act,
        policy_params=lambda s: s.params,
        num_updates=lambda c: c.num_updates,
    )
