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

The pieces are module-level functions that `make_agent` composes: `make_networks`,
`sample_action` (a squashed-Gaussian action and its log-prob), `act`, `collect` /
`warmup` (through `rlx.replay.collect`), the critic target `soft_q_target`, the losses
`critic_loss`, `sac_actor_loss` and `alpha_loss`, `polyak`, `gradient_step` joining
them, and `learn_step`. `critic_target` and `actor_loss` can be replaced by passing a
function.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from rlx import distributions as D
from rlx import replay
from rlx.config import config, static, traced
from rlx.envs.check import check_interface
from rlx.envs.wrappers import EpisodeStats, is_discrete
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
    """SAC's parameters: actor, the stacked critics and their targets, the log temperature
    (scalar) and the observation statistics."""

    actor: Any
    critic: Any  # params of `num_critics` critics stacked on axis 0
    target_critic: Any
    log_alpha: jax.Array
    obs_stats: RunningStats


# One stored step (shared with DQN): obs, action (in [-1, 1]^D, the tanh-space action),
# reward, next_obs (the true next observation), terminated, truncated.
Transition = replay.Transition


def polyak(online: Any, target: Any, tau: jax.Array) -> Any:
    """`τ·online + (1-τ)·target`, leaf by leaf; τ a scalar."""
    return jax.tree.map(lambda o, t: tau * o + (1.0 - tau) * t, online, target)


def transition_spec(obs_shape: tuple, act_dim: int) -> Transition:
    """Shapes and dtypes of one stored transition with observations `obs_shape` and
    `act_dim`-dimensional actions."""
    f, b = jnp.float32, jnp.bool_
    s = jax.ShapeDtypeStruct
    return Transition(s(obs_shape, f), s((act_dim,), f), s((), f), s(obs_shape, f), s((), b), s((), b))


def example_transition(env: Any, env_params: Any = None) -> Transition:
    """Shapes and dtypes of one stored transition for `env`."""
    params = env.default_params if env_params is None else env_params
    return transition_spec(env.observation_space(params).shape, env.action_space(params).shape[0])


def buffer_bytes(env: Any, cfg: SACConfig) -> int:
    """Replay memory of one member: `buffer_size * transition size`. A population of P
    members needs P times this."""
    return replay.nbytes(example_transition(env), cfg.buffer_size)


# -- networks and the policy -------------------------------------------------------------------
class SACNetworks(NamedTuple):
    """The modules and the static facts about the action space that every piece needs."""

    actor: Any  # GaussianActor: obs [N, *obs] -> (mean [N, D], log_std [N, D]), pre-squash
    critic: Any  # QCritic: (obs [N, *obs], action [N, D]) -> Q [N]; params of num_critics stacked
    num_critics: int  # K
    act_dim: int  # D
    low: jax.Array  # [D] the env's action box
    high: jax.Array  # [D]
    obs_shape: tuple
    normalize_obs: bool


def make_networks(env: Any, cfg: SACConfig) -> SACNetworks:
    """The actor and the critic ensemble for `env`'s spaces; one line naming the problem
    for discrete actions."""
    obs_space = env.observation_space(env.default_params)
    act_space = env.action_space(env.default_params)
    if is_discrete(act_space):
        raise ValueError(
            f"SAC needs continuous (Box) actions, but {env.name} has {act_space.n} discrete actions: "
            "use rlx.agents.dqn (dqn, c51, qrdqn) or ppo for discrete envs."
        )
    act_dim = act_space.shape[0]
    return SACNetworks(
        actor=GaussianActor(act_dim, cfg.hidden, cfg.activation, state_dependent_std=True),
        critic=QCritic(cfg.critic_hidden, cfg.activation),
        num_critics=cfg.num_critics, act_dim=act_dim,
        low=jnp.asarray(act_space.low, jnp.float32), high=jnp.asarray(act_space.high, jnp.float32),
        obs_shape=obs_space.shape, normalize_obs=cfg.normalize_obs,
    )  # fmt: skip


def observe(nets: SACNetworks, params: SACParams, obs: jax.Array) -> jax.Array:
    """What the networks see: `obs` `[..., *obs_shape]` normalised with the running
    statistics, if enabled; the same shape."""
    return normalize(params.obs_stats, obs) if nets.normalize_obs else obs


def to_env(nets: SACNetworks, action: jax.Array) -> jax.Array:
    """An action in `[-1, 1]^D` (`[..., D]`) mapped affinely onto the env's box."""
    return nets.low + (action + 1.0) * 0.5 * (nets.high - nets.low)


def sample_action(nets: SACNetworks, actor_params: Any, obs: jax.Array, key: jax.Array) -> tuple:
    """A reparameterised squashed-Gaussian sample: batched observed `obs [N, *obs]` ->
    `(action = tanh(u) in [-1, 1]^D [N, D], log π(action | obs) [N])`,
    `u ~ N(mean, exp(log_std)²)` with the tanh change of variables in the log-prob."""
    mean, log_std = nets.actor.apply(actor_params, obs, 1)
    squashed, u = D.tanh_gaussian_sample(key, mean, log_std)
    return squashed, D.tanh_gaussian_log_prob(mean, log_std, u)


def q_values(nets: SACNetworks, critic_params: Any, obs: jax.Array, action: jax.Array) -> jax.Array:
    """Every critic at `(obs [N, *obs], action [N, D])`: `[K, N]`."""
    return ensemble_apply(nets.critic, critic_params, obs, action, 1)


def act(nets: SACNetworks, params: SACParams, obs: jax.Array, key: jax.Array, c: SACConfig,
        deterministic: bool = True) -> jax.Array:  # fmt: skip
    """One unbatched observation -> one env action `[D]` in the box: tanh of the mean, or
    of a sample when not `deterministic`."""
    mean, log_std = nets.actor.apply(params.actor, observe(nets, params, obs[None]), 1)
    u = mean[0] if deterministic else D.gaussian_sample(key, mean[0], log_std[0])
    return to_env(nets, jnp.tanh(u))


def make_optimizers(c: SACConfig) -> tuple:
    """`(actor, critic, alpha)` optimisers: Adam at lr, lr and alpha_lr."""
    return optax.adam(c.lr), optax.adam(c.lr), optax.adam(c.alpha_lr)


# -- collecting --------------------------------------------------------------------------------
def collect(nets: SACNetworks, params: SACParams, env: Any, env_params: Any, carry: tuple,
            num_steps: int) -> tuple[tuple, Transition]:  # fmt: skip
    """`num_steps` steps of the current policy from `carry = (env_state, obs, key)`. Returns
    the new carry and a replay `Transition` with leaves `[T, B, ...]`, actions in `[-1, 1]^D`."""
    policy = lambda obs, k: sample_action(nets, params.actor, observe(nets, params, obs), k)[0]  # noqa: E731
    return replay.collect(env, env_params, carry, policy, num_steps, lambda a: to_env(nets, a))


def warmup(nets: SACNetworks, env: Any, env_params: Any, carry: tuple, num_steps: int) -> tuple[tuple, Transition]:
    """`collect` with actions uniform on `[-1, 1]^D` (the warm-up that fills the buffer)."""
    policy = lambda obs, k: jax.random.uniform(k, (obs.shape[0], nets.act_dim), jnp.float32, -1.0, 1.0)  # noqa: E731
    return replay.collect(env, env_params, carry, policy, num_steps, lambda a: to_env(nets, a))


def init_state(nets: SACNetworks, env: Any, cfg: SACConfig, c: SACConfig, env_params: Any, key: jax.Array) -> replay.AgentState:
    """The networks (target critics = critics), the optimisers, `num_envs` reset envs, and a
    buffer filled by the warm-up phase (`learning_starts // num_envs` uniform-random steps)."""
    key, k_actor, k_critic, k_env, k_warm = jax.random.split(key, 5)
    dummy_obs = jnp.zeros((1,) + nets.obs_shape, jnp.float32)
    dummy_act = jnp.zeros((1, nets.act_dim), jnp.float32)
    critic_params = ensemble_init(nets.critic, k_critic, nets.num_critics, dummy_obs, dummy_act, 1)
    params = SACParams(
        actor=nets.actor.init(k_actor, dummy_obs, 1),
        critic=critic_params,
        target_critic=critic_params,
        log_alpha=jnp.log(jnp.asarray(c.init_alpha, jnp.float32)),
        obs_stats=init_stats(nets.obs_shape),
    )
    opt_actor, opt_critic, opt_alpha = make_optimizers(c)
    opt_state = (opt_actor.init(params.actor), opt_critic.init(params.critic), opt_alpha.init(params.log_alpha))
    fill = lambda carry, num_steps: warmup(nets, env, env_params, carry, num_steps)  # noqa: E731
    example = transition_spec(nets.obs_shape, nets.act_dim)
    env_state, obs, buffer, traj = replay.reset_and_fill(env, env_params, (k_env, k_warm), example, fill, cfg)
    if traj is not None and cfg.normalize_obs:
        params = params.replace(obs_stats=update_stats(params.obs_stats, traj.obs))
    return replay.start_state(params, opt_state, buffer, env_state, obs, key, cfg.learning_starts)


# -- targets and losses ------------------------------------------------------------------------
def soft_q_target(reward: jax.Array, discount: jax.Array, next_q: jax.Array, next_logp: jax.Array,
                  alpha: jax.Array, c: SACConfig) -> jax.Array:  # fmt: skip
    """The default `critic_target`: the clipped double-Q soft target
    `reward + discount·(min_j Q̄_j(s', a') - α·log π(a'|s'))`, `[N]`; `reward` `[N]` is
    already scaled, `discount = γ·(1 - terminated)` `[N]`, `next_q` the target critics at
    `(s', a')` `[K, N]`, `next_logp` `[N]` the log-prob of `a' ~ π(·|s')`, `alpha` a scalar."""
    return reward + discount * (jnp.min(next_q, 0) - alpha * next_logp)


def critic_loss(q: jax.Array, target: jax.Array) -> jax.Array:
    """`Σ_j mean_n ½ (Q_j(s, a) - y)²`: q `[K, N]`, target `[N]`; a scalar."""
    return 0.5 * jnp.sum(jnp.mean((q - target) ** 2, -1))


def sac_actor_loss(logp: jax.Array, q: jax.Array, alpha: jax.Array, c: SACConfig) -> jax.Array:
    """The default `actor_loss`: `mean_n(α·log π(ã|s) - min_j Q_j(s, ã))`, with `ã ~ π(·|s)`
    reparameterised; logp `[N]`, q the (updated) critics at `(s, ã)` `[K, N]`; a scalar."""
    return jnp.mean(alpha * logp - jnp.min(q, 0))


def alpha_loss(log_alpha: jax.Array, logp: jax.Array, target_entropy: jax.Array) -> jax.Array:
    """The temperature loss `-mean_n(log α·(log π(ã|s) + H̄))`: its gradient raises α while
    the entropy `-mean logp` is below the target `H̄`. log_alpha a scalar, logp `[N]`."""
    return -jnp.mean(log_alpha * (logp + target_entropy))


def target_entropy(c: SACConfig, act_dim: int) -> jax.Array:
    """`H̄ = -target_entropy_scale·D` (scalar), D = `act_dim`."""
    return -c.target_entropy_scale * act_dim


def descend(objective: Callable, optimizer: optax.GradientTransformation, params: Any, opt_state: Any) -> tuple:
    """One optimiser step on `objective(params) -> (loss, aux)`. Returns
    `(params, opt_state, loss, aux)`, with loss and aux at the old params."""
    (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, aux


# -- one gradient step and the learn step ------------------------------------------------------
def gradient_step(nets: SACNetworks, cfg: SACConfig, c: SACConfig, params: SACParams, opt_state: tuple,
                  mb: Transition, key: jax.Array, critic_target: Callable,
                  actor_loss: Callable) -> tuple[SACParams, tuple, dict]:  # fmt: skip
    """One SAC step on a minibatch `mb` (leaves `[N, ...]`): the critics onto
    `critic_target`, then the actor with `actor_loss` against the updated critics, then
    log α (with `cfg.autotune_alpha`), then the target critics by Polyak averaging.
    Returns `(params, opt_state, stats)`, stats scalars."""
    opt_actor, opt_critic, opt_alpha = make_optimizers(c)
    k_next, k_pi = jax.random.split(key)
    obs, next_obs = observe(nets, params, mb.obs), observe(nets, params, mb.next_obs)
    alpha = jnp.exp(params.log_alpha)
    next_action, next_logp = sample_action(nets, params.actor, next_obs, k_next)
    next_q = q_values(nets, params.target_critic, next_obs, next_action)
    reward = mb.reward * c.reward_scale
    # Only termination stops the bootstrap: truncated steps bootstrap from the true next obs.
    discount = c.gamma * (1.0 - mb.terminated.astype(jnp.float32))
    # A target is a constant of the regression, whatever `critic_target` computes it from.
    y = jax.lax.stop_gradient(critic_target(reward, discount, next_q, next_logp, alpha, c))

    def critic_objective(critic_params):
        q = q_values(nets, critic_params, obs, mb.action)
        return critic_loss(q, y), q

    critic_params, opt_critic_state, loss_q, q = descend(critic_objective, opt_critic, params.critic, opt_state[1])

    def actor_objective(actor_params):
        action, logp = sample_action(nets, actor_params, obs, k_pi)
        return actor_loss(logp, q_values(nets, critic_params, obs, action), alpha, c), logp

    actor_params, opt_actor_state, loss_pi, logp = descend(actor_objective, opt_actor, params.actor, opt_state[0])
    logp = jax.lax.stop_gradient(logp)
    h_target = target_entropy(c, nets.act_dim)
    if cfg.autotune_alpha:
        log_alpha, opt_alpha_state, loss_alpha, _ = descend(
            lambda la: (alpha_loss(la, logp, h_target), None), opt_alpha, params.log_alpha, opt_state[2]
        )
    else:
        log_alpha, opt_alpha_state = params.log_alpha, opt_state[2]
        loss_alpha = alpha_loss(log_alpha, logp, h_target)
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
    return new, (opt_actor_state, opt_critic_state, opt_alpha_state), stats


def learn_step(step: Callable, buffer: replay.ReplayState, key: jax.Array, params: SACParams, opt_state: tuple,
               cfg: SACConfig) -> tuple[SACParams, tuple, dict]:  # fmt: skip
    """One update's `cfg.gradient_steps` gradient steps, each on a fresh minibatch from
    `buffer`: `step(params, opt_state, mb, key) -> (params, opt_state, stats)`. Returns
    `(params, opt_state, stats {name: [gradient_steps]})`."""

    def one(carry, k):
        params, opt_state = carry
        k_sample, k_step = jax.random.split(k)
        mb = replay.sample(buffer, k_sample, cfg.batch_size)
        params, opt_state, stats = step(params, opt_state, mb, k_step)
        return (params, opt_state), stats

    (params, opt_state), stats = jax.lax.scan(one, (params, opt_state), jax.random.split(key, cfg.gradient_steps))
    return params, opt_state, stats


def update(nets: SACNetworks, env: Any, cfg: SACConfig, c: SACConfig, state: replay.AgentState, env_params: Any,
           critic_target: Callable, actor_loss: Callable) -> tuple[replay.AgentState, dict]:  # fmt: skip
    """One update: collect `rollout_steps` policy steps per env, store them, then
    `learn_step` with `gradient_step(critic_target, actor_loss)`. Returns `(state, metrics)`."""
    params = state.params
    carry = (state.env_state, state.obs, state.key)
    (env_state, last_obs, key), traj = collect(nets, params, env, env_params, carry, cfg.rollout_steps)
    buffer = replay.add_rollout(state.buffer, traj)
    if cfg.normalize_obs:
        params = params.replace(obs_stats=update_stats(params.obs_stats, traj.obs))
    key, k_learn = jax.random.split(key)
    step = lambda p, o, mb, k: gradient_step(nets, cfg, c, p, o, mb, k, critic_target, actor_loss)  # noqa: E731
    params, opt_state, stats = learn_step(step, buffer, k_learn, params, state.opt_state, cfg)
    carry = (env_state, last_obs, key)
    return replay.finish_update(state, params, opt_state, buffer, carry, stats, cfg.steps_per_update)


# -- the agent ---------------------------------------------------------------------------------
def make_agent(env: Any, cfg: SACConfig, critic_target: Callable | None = None,
               actor_loss: Callable | None = None) -> Agent:  # fmt: skip
    """Build SAC for `env` (continuous actions) from the pieces above; the functions close
    over `cfg`'s static fields. Each keyword replaces one piece:

    critic_target(reward [N], discount [N], next_q [K, N], next_logp [N], alpha, c) -> [N]:
        the critics' regression target (default `soft_q_target`, clipped double-Q);
        gradients are stopped at its output.
    actor_loss(logp [N], q [K, N], alpha, c) -> scalar: the policy loss on
        reparameterised actions, differentiated through logp and q (default
        `sac_actor_loss`).
    """
    check_interface(env, where="sac.make_agent")  # the env's methods, spaces and observation, before any jax runs
    env = EpisodeStats(env)
    nets = make_networks(env, cfg)
    critic_target = soft_q_target if critic_target is None else critic_target
    actor_loss = sac_actor_loss if actor_loss is None else actor_loss
    return replay.agent_from_pieces(nets, env, cfg, init_state, update, act, critic_target, actor_loss)
