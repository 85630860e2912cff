"""Soft Actor-Critic (Haarnoja et al. 2018, with automatic entropy tuning) as an rlx agent.

`init` builds the networks, then runs the warm-up phase: `learning_starts` env steps
per member with uniform random actions, filling the replay buffer, in its own
`lax.scan` (no learning, so no member pays for updates it would skip). Each `update`
then collects `rollout_steps` steps from `num_envs` envs with the current policy,
adds them to the buffer, and takes `utd * num_envs * rollout_steps` gradient steps.

One gradient step, on a minibatch (s, a, r, s', terminated) from the buffer:

    y      = r + γ (1 - terminated) (min_j Q̄_j(s', a') - α log π(a'|s')),  a' ~ π(·|s')
    L_Q    = Σ_j mean ½ (Q_j(s, a) - y)²                        (twin critics, j = 1..N)
    L_π    = mean(α log π(ã|s) - min_j Q_j(s, ã)),  ã ~ π(·|s)  (reparameterised)
    L_α    = -mean(log α · (log π(ã|s) + H̄)),  H̄ = -target_entropy_scale · dim(A)
    Q̄     ← τ Q + (1 - τ) Q̄                                    (Polyak)

Truncation is not termination: the buffer stores the true next observation
(`info["final_obs"]`) with `terminated` and `truncated` apart, and only
`terminated` stops the bootstrap. Actions are learned in `[-1, 1]^D` (tanh-Gaussian)
and mapped affinely onto the env's box.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from rlx import distributions as D
from rlx import replay
from rlx.config import config, static, traced
from rlx.envs.wrappers import EpisodeStats, episode_summary, is_discrete
from rlx.networks import ACTIVATIONS, GaussianActor, QCritic, ensemble_apply, ensemble_init
from rlx.running_stats import RunningStats, init_stats, normalize, update_stats
from rlx.types import Agent


@config
class SACConfig(replay.ReplaySchedule):
    """SAC settings. Defaults are for gymnax Pendulum-v1 (one env, one gradient step per
    env step, batch 256, as in the SAC paper); see `brax_config` for many envs."""

    num_envs: int = static(1, "parallel environments per member", ge=1)
    rollout_steps: int = static(1, "env steps per env in one update", ge=1)
    utd: float = static(1.0, "update-to-data ratio: gradient steps per env step (transition)", gt=0)
    total_steps: int = static(20_000, "env steps per member in a full run, warm-up included", ge=1)
    learning_starts: int = static(1_000, "warm-up env steps per member with uniform random actions, before learning", ge=0)
    buffer_size: int = static(100_000, "replay capacity (transitions per member)", ge=1)
    batch_size: int = static(256, "minibatch size of one gradient step", ge=1)
    hidden: tuple = static((256, 256), "actor hidden layer widths", ge=1)
    critic_hidden: tuple = static((256, 256), "critic hidden layer widths", ge=1)
    activation: str = static("relu", "hidden activation", choices=tuple(ACTIVATIONS))
    num_critics: int = static(2, "critics in the ensemble (2: twin Q, clipped double-Q target)", ge=1)
    autotune_alpha: bool = static(True, "learn the temperature α towards the target entropy")
    normalize_obs: bool = static(False, "running observation normalisation")

    lr: float = traced(3e-4, "Adam learning rate of actor and critics", gt=0)
    alpha_lr: float = traced(3e-4, "Adam learning rate of log α", gt=0)
    gamma: float = traced(0.99, "discount", gt=0, le=1)
    tau: float = traced(0.005, "Polyak coefficient: target ← τ·online + (1-τ)·target", ge=0, le=1)
    init_alpha: float = traced(1.0, "initial temperature α (fixed α without autotune_alpha)", gt=0)
    target_entropy_scale: float = traced(1.0, "target entropy is -scale·dim(A)")
    reward_scale: float = traced(1.0, "rewards are multiplied by this", gt=0)



def brax_config(**overrides: Any) -> SACConfig:
    """A many-env setting modelled on brax.training's SAC: the 128-env entry of brax's
    notebooks/training.ipynb (walker2d: 128 envs, batch 128, 32 gradient steps per batch
    of env steps, so update-to-data 0.25, γ 0.997, lr 6e-4, reward scale 5, 8192 warm-up
    transitions, observation normalisation, (256, 256) networks, τ 0.005); that notebook
    has no SAC entry for inverted_pendulum. Not copied from brax: its target entropy
    -0.5·dim(A) (ours -dim(A)), its alpha lr fixed at 3e-4, its warm-up with the initial
    policy (ours: uniform actions) and its dropping of truncated transitions from the
    critic loss (ours bootstraps them from the true final observation).

    With 128 envs and 1e5 steps no 1000-step episode ends during training, so the
    training `episode_return` averages only failed episodes: judge such runs by
    evaluation (`--eval-every`; measurements in docs/tuning-notes.md)."""
    base = dict(
        num_envs=128, rollout_steps=1, utd=0.25, total_steps=100_096, learning_starts=8192,
        buffer_size=100_000, batch_size=128, lr=6e-4, alpha_lr=6e-4, gamma=0.997, reward_scale=5.0,
        normalize_obs=True, hidden=(256, 256), critic_hidden=(256, 256),
    )  # fmt: skip
    base.update(overrides)
    return SACConfig(**base)


@struct.dataclass
class SACParams:
    actor: Any
    critic: Any  # params of `num_critics` critics stacked on axis 0
    target_critic: Any
    log_alpha: jax.Array
    obs_stats: RunningStats


@struct.dataclass
class SACState:
    params: SACParams
    opt_state: Any  # (actor, critic, alpha) optax states
    buffer: replay.ReplayState
    env_state: Any  # [B] batched env states (with episode statistics)
    obs: jax.Array  # [B, *obs_shape]
    key: jax.Array
    update_step: jax.Array  # int32, updates done so far
    env_steps: jax.Array  # int32, env steps done so far (this member, warm-up included)


# One stored step (shared with DQN): obs, action (in [-1, 1]^D, the tanh-space action),
# reward, next_obs (the true next observation), terminated, truncated.
Transition = replay.Transition


def polyak(online: Any, target: Any, tau: jax.Array) -> Any:
    """`τ·online + (1-τ)·target`, leaf by leaf."""
    return jax.tree.map(lambda o, t: tau * o + (1.0 - tau) * t, online, target)


def example_transition(env: Any, env_params: Any = None) -> Transition:
    """Shapes and dtypes of one stored transition for `env`."""
    params = env.default_params if env_params is None else env_params
    obs_shape = env.observation_space(params).shape
    act_shape = env.action_space(params).shape
    f, b = jnp.float32, jnp.bool_
    return Transition(
        jax.ShapeDtypeStruct(obs_shape, f), jax.ShapeDtypeStruct(act_shape, f), jax.ShapeDtypeStruct((), f),
        jax.ShapeDtypeStruct(obs_shape, f), jax.ShapeDtypeStruct((), b), jax.ShapeDtypeStruct((), b),
    )  # fmt: skip


def buffer_bytes(env: Any, cfg: SACConfig) -> int:
    """Replay memory of one member: `buffer_size * transition size`. A population of P
    members needs P times this."""
    return replay.nbytes(example_transition(env), cfg.buffer_size)


def make_agent(env: Any, cfg: SACConfig) -> Agent:
    """Build SAC for `env` (continuous actions); the functions close over `cfg`'s static fields."""
    env = EpisodeStats(env)
    obs_space = env.observation_space(env.default_params)
    act_space = env.action_space(env.default_params)
    if is_discrete(act_space):
        raise ValueError(
            f"SAC needs continuous (Box) actions, but {env.name} has {act_space.n} discrete actions: "
            "use rlx.agents.dqn (dqn, c51, qrdqn) or ppo for discrete envs."
        )
    act_dim = act_space.shape[0]
    low, high = jnp.asarray(act_space.low, jnp.float32), jnp.asarray(act_space.high, jnp.float32)
    actor = GaussianActor(act_dim, cfg.hidden, cfg.activation, state_dependent_std=True)
    critic = QCritic(cfg.critic_hidden, cfg.activation)
    example = example_transition(env)
    steps_per_update = cfg.steps_per_update
    gradient_steps = cfg.gradient_steps
    warmup_steps = cfg.learning_starts // cfg.num_envs
    num_critics = cfg.num_critics

    def to_env(a):
        """`[-1, 1]^D` -> the env's box."""
        return low + (a + 1.0) * 0.5 * (high - low)

    def observe(params: SACParams, obs):
        return normalize(params.obs_stats, obs) if cfg.normalize_obs else obs

    def policy(actor_params, obs, key):
        """Batched normalised obs `[N, *obs]` -> (action in [-1, 1] `[N, D]`, log π `[N]`)."""
        mean, log_std = actor.apply(actor_params, obs, 1)
        squashed, u = D.tanh_gaussian_sample(key, mean, log_std)
        return squashed, D.tanh_gaussian_log_prob(mean, log_std, u)

    def q_values(critic_params, obs, action):
        """`[num_critics, N]`."""
        return ensemble_apply(critic, critic_params, obs, action, 1)

    def optimizers(c: SACConfig):
        return optax.adam(c.lr), optax.adam(c.lr), optax.adam(c.alpha_lr)

    # -- init: networks, then the warm-up phase ---------------------------------------
    def init(key, c: SACConfig, env_params) -> SACState:
        key, k_actor, k_critic, k_env, k_warm = jax.random.split(key, 5)
        dummy_obs = jnp.zeros((1,) + obs_space.shape, jnp.float32)
        dummy_act = jnp.zeros((1, act_dim), jnp.float32)
        critic_params = ensemble_init(critic, k_critic, num_critics, dummy_obs, dummy_act, 1)
        params = SACParams(
            actor=actor.init(k_actor, dummy_obs, 1),
            critic=critic_params,
            target_critic=critic_params,
            log_alpha=jnp.log(jnp.asarray(c.init_alpha, jnp.float32)),
            obs_stats=init_stats(obs_space.shape),
        )
        opt_a, opt_c, opt_al = optimizers(c)
        opt_state = (opt_a.init(params.actor), opt_c.init(params.critic), opt_al.init(params.log_alpha))
        obs, env_state = jax.vmap(env.reset, (0, None))(jax.random.split(k_env, cfg.num_envs), env_params)
        buffer = replay.init(example, cfg.buffer_size)

        def uniform(obs, k):
            return jax.random.uniform(k, (cfg.num_envs, act_dim), jnp.float32, -1.0, 1.0)

        if warmup_steps:
            (env_state, obs, _), traj = replay.collect(
                env, env_params, (env_state, obs, k_warm), uniform, warmup_steps, to_env
            )
            buffer = replay.add_rollout(buffer, traj)
            if cfg.normalize_obs:
                params = params.replace(obs_stats=update_stats(params.obs_stats, traj.obs))
        zero = jnp.zeros((), jnp.int32)
        return SACState(params, opt_state, buffer, env_state, obs, key, zero, zero + cfg.learning_starts)

    # -- one gradient step -----------------------------------------------------------
    def gradient_step(c: SACConfig, params: SACParams, opt_state, mb: Transition, key):
        opt_a, opt_c, opt_al = optimizers(c)
        k_next, k_pi = jax.random.split(key)
        obs, next_obs = observe(params, mb.obs), observe(params, mb.next_obs)
        alpha = jnp.exp(params.log_alpha)

        next_action, next_logp = policy(params.actor, next_obs, k_next)
        next_q = jnp.min(q_values(params.target_critic, next_obs, next_action), 0)
        not_term = 1.0 - mb.terminated.astype(jnp.float32)
        target = mb.reward * c.reward_scale + c.gamma * not_term * (next_q - alpha * next_logp)
        target = jax.lax.stop_gradient(target)

        def critic_loss(critic_params):
            q = q_values(critic_params, obs, mb.action)
            return 0.5 * jnp.sum(jnp.mean((q - target) ** 2, -1)), q

        (loss_q, q), g = jax.value_and_grad(critic_loss, has_aux=True)(params.critic)
        upd, opt_c_state = opt_c.update(g, opt_state[1], params.critic)
        critic_params = optax.apply_updates(params.critic, upd)

        def actor_loss(actor_params):
            action, logp = policy(actor_params, obs, k_pi)
            q_pi = jnp.min(q_values(critic_params, obs, action), 0)
            return jnp.mean(alpha * logp - q_pi), logp

        (loss_pi, logp), g = jax.value_and_grad(actor_loss, has_aux=True)(params.actor)
        upd, opt_a_state = opt_a.update(g, opt_state[0], params.actor)
        actor_params = optax.apply_updates(params.actor, upd)

        target_entropy = -c.target_entropy_scale * act_dim
        logp = jax.lax.stop_gradient(logp)

        def alpha_loss(log_alpha):
            return -jnp.mean(log_alpha * (logp + target_entropy))

        loss_alpha, g = jax.value_and_grad(alpha_loss)(params.log_alpha)
        if cfg.autotune_alpha:
            upd, opt_al_state = opt_al.update(g, opt_state[2], params.log_alpha)
            log_alpha = optax.apply_updates(params.log_alpha, upd)
        else:
            opt_al_state, log_alpha = opt_state[2], params.log_alpha

        new = params.replace(
            actor=actor_params,
            critic=critic_params,
            target_critic=polyak(critic_params, params.target_critic, c.tau),
            log_alpha=log_alpha,
        )
        stats = dict(
            critic_loss=loss_q, actor_loss=loss_pi, alpha_loss=loss_alpha, alpha=alpha,
            entropy=-jnp.mean(logp), q=jnp.mean(q),
        )  # fmt: skip
        return new, (opt_a_state, opt_c_state, opt_al_state), stats

    # -- one update: collect, store, learn ----------------------------------------------
    def update(state: SACState, c: SACConfig, env_params):
        params = state.params

        def explore(obs, k):
            return policy(params.actor, observe(params, obs), k)[0]

        (env_state, last_obs, key), traj = replay.collect(
            env, env_params, (state.env_state, state.obs, state.key), explore, cfg.rollout_steps, to_env
        )
        buffer = replay.add_rollout(state.buffer, traj)
        if cfg.normalize_obs:
            params = params.replace(obs_stats=update_stats(params.obs_stats, traj.obs))

        def learn(carry, k):
            params, opt_state = carry
            k_sample, k_step = jax.random.split(k)
            mb = replay.sample(buffer, k_sample, cfg.batch_size)
            params, opt_state, stats = gradient_step(c, params, opt_state, mb, k_step)
            return (params, opt_state), stats

        key, k_learn = jax.random.split(key)
        (params, opt_state), stats = jax.lax.scan(
            learn, (params, state.opt_state), jax.random.split(k_learn, gradient_steps)
        )
        env_steps = state.env_steps + steps_per_update
        new_state = SACState(params, opt_state, buffer, env_state, last_obs, key, state.update_step + 1, env_steps)
        episode_return, episodes = episode_summary(env_state)
        metrics = {k: v.mean() for k, v in stats.items()}
        metrics.update(env_steps=env_steps, episode_return=episode_return, episodes=episodes)
        return new_state, metrics

    # -- acting ------------------------------------------------------------------------
    def act(params: SACParams, obs, key, c: SACConfig, deterministic: bool = True):
        """One unbatched observation -> one env action."""
        mean, log_std = actor.apply(params.actor, observe(params, obs[None]), 1)
        u = mean[0] if deterministic else D.gaussian_sample(key, mean[0], log_std[0])
        return to_env(jnp.tanh(u))

    return Agent(
        init=init,
        update=update,
        act=act,
        policy_params=lambda s: s.params,
        num_updates=lambda c: c.num_updates,
    )
