"""DQN (Mnih et al. 2015; optionally Double DQN) and its distributional heads, C51
(Bellemare et al. 2017) and QR-DQN (Dabney et al. 2018), as one rlx agent.

`head` picks the value representation and its loss (pure functions in
`rlx.distributional`, one transition per call, vmapped over the minibatch):

    q    Q(s, ·) `[A]`;        ½ δ², δ = r + γ(1-term) Q̄(s', a*) - Q(s, a)
    c51  logits `[A, M]` over a fixed support z; cross-entropy to Π_C law(r + γ(1-term) Z̄(s', a*))
    qr   quantiles `[A, M]`;   quantile-Huber regression onto r + γ(1-term) θ̄(s', a*)

with `a* = argmax_a Q̄(s', a)` (or `argmax_a Q(s', a)` of the online network with
`double_q`), Q the mean of the distribution. Targets come from a target network,
moved towards the online one by Polyak averaging (`tau`; 1 is a hard copy) every
`target_update_period` gradient steps.

`init` runs the warm-up phase (`learning_starts` env steps per member with uniform
random actions, filling the replay buffer) in its own `lax.scan`. Each `update`
collects `rollout_steps` ε-greedy steps from `num_envs` envs, stores them, and takes
`utd * num_envs * rollout_steps` gradient steps. Truncation is not termination: the
buffer stores the true next observation, and only `terminated` stops the bootstrap.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from rlx import distributional as dist
from rlx import replay
from rlx.config import _concrete, config, static, traced
from rlx.envs.wrappers import EpisodeStats, episode_summary, is_discrete
from rlx.networks import ACTIVATIONS, DiscreteQNetwork
from rlx.running_stats import RunningStats, init_stats, normalize, update_stats
from rlx.types import Agent

HEADS = ("q", "c51", "qr")
EPS_SCHEDULES = ("linear", "exponential")


@config
class DQNConfig(replay.ReplaySchedule):
    """DQN settings, tuned for gymnax CartPole-v1 at 5e5 env steps. Defaults follow
    PureJaxRL's CartPole DQN (10 envs, one gradient step per 10 env steps, batch 128,
    replay 1e4, target copied every 500 env steps), except that the learning rate is
    1e-3 and annealed to 0. Measured on 8 seeds (greedy return >= 475): DQN 7/8 at lr 1e-3
    against 3/8 at PureJaxRL's 2.5e-4. QR-DQN needs the larger rate: its quantile-Huber
    loss has bounded gradients, so each step corrects a quantile by about lr, and at
    2.5e-4 the max operator's overestimation, re-injected at every target sync, outpaces
    that on some seeds (quantiles drift to ~1e4, return ~9; lr 1e-4 is worse)."""

    head: str = static("q", "value head: q (DQN), c51 (categorical) or qr (quantile)", choices=HEADS)
    double_q: bool = static(False, "select the bootstrap action with the online network (Double DQN)")
    num_envs: int = static(10, "parallel environments per member", ge=1)
    rollout_steps: int = static(1, "env steps per env in one update", ge=1)
    utd: float = static(0.1, "update-to-data ratio: gradient steps per env step (transition)", gt=0)
    total_steps: int = static(500_000, "env steps per member in a full run, warm-up included", ge=1)
    learning_starts: int = static(10_000, "warm-up env steps per member with uniform random actions", ge=0)
    buffer_size: int = static(10_000, "replay capacity (transitions per member)", ge=1)
    batch_size: int = static(128, "minibatch size of one gradient step", ge=1)
    target_update_period: int = static(50, "gradient steps between target-network updates", ge=1)
    hidden: tuple = static((64, 64), "hidden layer widths", ge=1)
    activation: str = static("relu", "hidden activation", choices=tuple(ACTIVATIONS))
    eps_schedule: str = static("linear", "ε decay from eps_start to eps_end over eps_fraction of total_steps", choices=EPS_SCHEDULES)
    num_atoms: int = static(51, "c51: support size; qr: number of quantiles", ge=2)
    huber_kappa: float = static(1.0, "qr: Huber threshold κ of the quantile loss (0: plain quantile loss)", ge=0)
    normalize_obs: bool = static(False, "running observation normalisation")
    anneal_lr: bool = static(True, "linearly decay the learning rate to 0 over the run's gradient steps")

    lr: float = traced(1e-3, "Adam learning rate (annealed to 0 with anneal_lr)", gt=0)
    gamma: float = traced(0.99, "discount", gt=0, le=1)
    tau: float = traced(1.0, "Polyak coefficient of target updates: target ← τ·online + (1-τ)·target", ge=0, le=1)
    eps_start: float = traced(1.0, "initial exploration ε", ge=0, le=1)
    eps_end: float = traced(0.05, "final exploration ε", ge=0, le=1)
    eps_fraction: float = traced(0.5, "fraction of total_steps over which ε decays", gt=0, le=1)
    max_grad_norm: float = traced(10.0, "global gradient-norm clip", gt=0)
    reward_scale: float = traced(1.0, "rewards are multiplied by this", gt=0)
    v_min: float = traced(0.0, "c51: lowest support atom (CartPole returns lie in [0, 100])")
    v_max: float = traced(100.0, "c51: highest support atom")

    def check(self) -> None:
        replay.check_schedule(self)
        name = type(self).__name__
        lo, hi = _concrete(self.v_min), _concrete(self.v_max)
        if lo is not None and hi is not None and np.any(lo >= hi):
            raise ValueError(f"{name}.v_min = {self.v_min} is invalid: it must be < v_max = {self.v_max}.")


@config
class C51Config(DQNConfig):
    """C51: DQN with a categorical head of `num_atoms` atoms on [v_min, v_max] (its
    bounded support keeps it stable at PureJaxRL's lr: 8/8 CartPole seeds at 2.5e-4)."""

    head: str = static("c51", "value head: q (DQN), c51 (categorical) or qr (quantile)", choices=HEADS)
    lr: float = traced(2.5e-4, "Adam learning rate (annealed to 0 with anneal_lr)", gt=0)


@config
class QRDQNConfig(DQNConfig):
    """QR-DQN: DQN with a head of `num_atoms` quantiles and the quantile-Huber loss (κ 1),
    with Double-DQN action selection by default. Greedy returns on 8 CartPole seeds at
    5e5 steps: without double_q 5/8 seeds >= 475 (Q drifts above its bound 1/(1-γ) = 100
    on the failing seeds); with double_q 6/8 (500, 500, 500, 500, 500, 490, 301, 160).
    Target sync periods other than 50 gradient steps were worse with double_q: 100 gave
    4/8 (1/8 at lr 5e-4), 25 gave 0/8."""

    head: str = static("qr", "value head: q (DQN), c51 (categorical) or qr (quantile)", choices=HEADS)
    double_q: bool = static(True, "select the bootstrap action with the online network (Double DQN)")
    num_atoms: int = static(32, "c51: support size; qr: number of quantiles", ge=2)


@struct.dataclass
class DQNParams:
    online: Any
    target: Any
    obs_stats: RunningStats


@struct.dataclass
class DQNState:
    params: DQNParams
    opt_state: Any
    buffer: replay.ReplayState
    env_state: Any  # [B] batched env states (with episode statistics)
    obs: jax.Array  # [B, *obs_shape]
    key: jax.Array
    update_step: jax.Array  # int32, updates done so far
    env_steps: jax.Array  # int32, env steps done so far (this member, warm-up included)


# One stored step (shared with SAC and the DηN agent): obs, action, reward, next_obs
# (the true next observation), terminated, truncated.
Transition = replay.Transition


def epsilon(c: DQNConfig, env_steps: jax.Array, total_steps: int, schedule: str) -> jax.Array:
    """ε after `env_steps` env steps: from eps_start to eps_end over eps_fraction·total_steps.

    linear: straight line, then flat. exponential: eps_end + (eps_start - eps_end)·0.01^x,
    x = env_steps / (eps_fraction·total_steps), so 99% of the decay is done at x = 1.
    """
    x = env_steps.astype(jnp.float32) / (c.eps_fraction * total_steps)
    if schedule == "linear":
        w = jnp.clip(1.0 - x, 0.0, 1.0)
    else:
        w = 0.01**x
    return c.eps_end + (c.eps_start - c.eps_end) * w


def make_optimizer(cfg: DQNConfig, c: DQNConfig) -> optax.GradientTransformation:
    """Adam with global-norm clipping; with `cfg.anneal_lr` the rate decays linearly to 0
    over the run's `num_updates * gradient_steps` gradient steps. `cfg` gives the static
    schedule, `c` the (possibly traced) values."""
    total = cfg.num_updates * cfg.gradient_steps
    lr = (lambda count: c.lr * (1.0 - count / total)) if cfg.anneal_lr else c.lr
    return optax.chain(optax.clip_by_global_norm(c.max_grad_norm), optax.adam(lr))


def learn(
    loss_fn: Callable, buffer: replay.ReplayState, key: jax.Array, online: Any, target: Any, opt_state: Any,
    update_step: jax.Array, cfg: DQNConfig, c: DQNConfig,
):
    """One update's `cfg.gradient_steps` gradient steps, each on a fresh minibatch from
    `buffer`, moving the target towards the online network every `target_update_period`
    gradient steps. `loss_fn(online, target, mb, key) -> (loss, aux dict of scalars)`.
    Returns `(online, target, opt_state, stats {name: [gradient_steps]})`."""
    opt = make_optimizer(cfg, c)
    n = cfg.gradient_steps

    def step(carry, xs):
        online, target, opt_state = carry
        k, i = xs
        mb = replay.sample(buffer, k, cfg.batch_size)
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(online, target, mb, jax.random.fold_in(k, 1))
        updates, opt_state = opt.update(grads, opt_state, online)
        online = optax.apply_updates(online, updates)
        done = update_step * n + i + 1  # gradient steps done, this one included
        sync = (done % cfg.target_update_period) == 0
        target = jax.tree.map(lambda o, t: jnp.where(sync, c.tau * o + (1.0 - c.tau) * t, t), online, target)
        return (online, target, opt_state), dict(loss=loss, **aux)

    xs = (jax.random.split(key, n), jnp.arange(n, dtype=jnp.int32))
    (online, target, opt_state), stats = jax.lax.scan(step, (online, target, opt_state), xs)
    return online, target, opt_state, stats


def example_transition(env: Any, env_params: Any = None) -> Transition:
    """Shapes and dtypes of one stored transition for `env`."""
    params = env.default_params if env_params is None else env_params
    obs_shape = env.observation_space(params).shape
    f = jnp.float32
    s = jax.ShapeDtypeStruct
    return Transition(s(obs_shape, f), s((), jnp.int32), s((), f), s(obs_shape, f), s((), jnp.bool_), s((), jnp.bool_))


def buffer_bytes(env: Any, cfg: DQNConfig) -> int:
    """Replay memory of one member: `buffer_size * transition size`. A population of P
    members needs P times this."""
    return replay.nbytes(example_transition(env), cfg.buffer_size)


def make_agent(env: Any, cfg: DQNConfig) -> Agent:
    """Build DQN / C51 / QR-DQN (by `cfg.head`) for `env`, which must have discrete actions."""
    env = EpisodeStats(env)
    obs_space = env.observation_space(env.default_params)
    act_space = env.action_space(env.default_params)
    if not is_discrete(act_space):
        raise ValueError(
            f"{type(cfg).__name__} (head {cfg.head!r}) needs discrete actions, but {env.name} has continuous "
            f"(Box) actions of shape {act_space.shape}: use rlx.agents.sac or ppo for continuous envs."
        )
    num_actions = act_space.n
    head = cfg.head
    network = DiscreteQNetwork(num_actions, cfg.hidden, cfg.activation, None if head == "q" else cfg.num_atoms)
    example = example_transition(env)
    steps_per_update = cfg.steps_per_update
    warmup_steps = cfg.learning_starts // cfg.num_envs
    num_atoms = cfg.num_atoms

    def observe(params: DQNParams, obs):
        return normalize(params.obs_stats, obs) if cfg.normalize_obs else obs

    def support(c: DQNConfig):
        return dist.categorical_support(c.v_min, c.v_max, num_atoms)

    def q_from_output(out, c: DQNConfig):
        """Network output -> Q-values `[..., A]` (the mean of the distribution)."""
        if head == "q":
            return out
        if head == "c51":
            return jax.nn.softmax(out, -1) @ support(c)
        return out.mean(-1)

    def uniform(obs, k):
        return jax.random.randint(k, (cfg.num_envs,), 0, num_actions, jnp.int32)

    # -- init: network, then the warm-up phase ---------------------------------------------
    def init(key, c: DQNConfig, env_params) -> DQNState:
        key, k_net, k_env, k_warm = jax.random.split(key, 4)
        online = network.init(k_net, jnp.zeros((1,) + obs_space.shape, jnp.float32), 1)
        params = DQNParams(online, online, init_stats(obs_space.shape))
        opt_state = make_optimizer(cfg, c).init(online)
        obs, env_state = jax.vmap(env.reset, (0, None))(jax.random.split(k_env, cfg.num_envs), env_params)
        buffer = replay.init(example, cfg.buffer_size)
        if warmup_steps:
            (env_state, obs, _), traj = replay.collect(env, env_params, (env_state, obs, k_warm), uniform, warmup_steps)
            buffer = replay.add_rollout(buffer, traj)
            if cfg.normalize_obs:
                params = params.replace(obs_stats=update_stats(params.obs_stats, traj.obs))
        zero = jnp.zeros((), jnp.int32)
        return DQNState(params, opt_state, buffer, env_state, obs, key, zero, zero + cfg.learning_starts)

    # -- the loss --------------------------------------------------------------------------
    def loss_fn(online, target_params, c: DQNConfig, params: DQNParams, mb: Transition):
        obs, next_obs = observe(params, mb.obs), observe(params, mb.next_obs)
        out = network.apply(online, obs, 1)
        out_next_target = network.apply(target_params, next_obs, 1)
        if cfg.double_q:
            selector = q_from_output(network.apply(online, next_obs, 1), c)
        else:
            selector = q_from_output(out_next_target, c)
        selector = jax.lax.stop_gradient(selector)
        out_next_target = jax.lax.stop_gradient(out_next_target)
        reward = mb.reward * c.reward_scale
        discount = c.gamma * (1.0 - mb.terminated.astype(jnp.float32))
        if head == "q":
            td = jax.vmap(dist.q_learning_td_error)(out, mb.action, reward, discount, out_next_target, selector)
            loss = jnp.mean(0.5 * td**2)
        elif head == "c51":
            z = support(c)
            losses = jax.vmap(dist.categorical_q_loss, (0, 0, 0, 0, 0, 0, None))(
                out, mb.action, reward, discount, out_next_target, selector, z
            )
            loss = jnp.mean(losses)
        else:
            losses = jax.vmap(dist.quantile_q_loss, (0, 0, 0, 0, 0, 0, None))(
                out, mb.action, reward, discount, out_next_target, selector, cfg.huber_kappa
            )
            loss = jnp.mean(losses)
        q_taken = jnp.take_along_axis(q_from_output(out, c), mb.action[:, None], -1)
        return loss, dict(q=jnp.mean(q_taken))

    # -- one update: collect, store, learn ----------------------------------------------------
    def update(state: DQNState, c: DQNConfig, env_params):
        params = state.params
        eps = epsilon(c, state.env_steps, cfg.total_steps, cfg.eps_schedule)

        def explore(obs, k):
            k_greedy, k_rand, k_coin = jax.random.split(k, 3)
            q = q_from_output(network.apply(params.online, observe(params, obs), 1), c)
            greedy = jnp.argmax(q, -1).astype(jnp.int32)
            random = uniform(obs, k_rand)
            return jnp.where(jax.random.uniform(k_coin, (cfg.num_envs,)) < eps, random, greedy)

        (env_state, last_obs, key), traj = replay.collect(
            env, env_params, (state.env_state, state.obs, state.key), explore, cfg.rollout_steps
        )
        buffer = replay.add_rollout(state.buffer, traj)
        if cfg.normalize_obs:
            params = params.replace(obs_stats=update_stats(params.obs_stats, traj.obs))
        key, k_learn = jax.random.split(key)
        online, target, opt_state, stats = learn(
            lambda on, tg, mb, _: loss_fn(on, tg, c, params, mb),
            buffer, k_learn, params.online, params.target, state.opt_state, state.update_step, cfg, c,
        )  # fmt: skip
        params = params.replace(online=online, target=target)
        env_steps = state.env_steps + steps_per_update
        new_state = DQNState(params, opt_state, buffer, env_state, last_obs, key, state.update_step + 1, env_steps)
        episode_return, episodes = episode_summary(env_state)
        metrics = {k: v.mean() for k, v in stats.items()}
        metrics.update(env_steps=env_steps, episode_return=episode_return, episodes=episodes, epsilon=eps)
        return new_state, metrics

    # -- acting --------------------------------------------------------------------------------
    def act(params: DQNParams, obs, key, c: DQNConfig, deterministic: bool = True):
        """One unbatched observation -> one action: greedy, or ε-greedy with ε = eps_end."""
        q = q_from_output(network.apply(params.online, observe(params, obs[None]), 1)[0], c)
        greedy = jnp.argmax(q).astype(jnp.int32)
        if deterministic:
            return greedy
        k_rand, k_coin = jax.random.split(key)
        random = jax.random.randint(k_rand, (), 0, num_actions, jnp.int32)
        return jnp.where(jax.random.uniform(k_coin) < c.eps_end, random, greedy)

    return Agent(
        init=init,
        update=update,
        act=act,
        policy_params=lambda s: s.params,
        num_updates=lambda c: c.num_updates,
    )
