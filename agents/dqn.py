"""DQN (Mnih et al. 2015; optionally Double DQN) and its distributional heads, C51
(Bellemare et al. 2017) and QR-DQN (Dabney et al. 2018), as one rlx agent.

`head` picks the value representation and its loss (built from the pure functions of
`rlx.distributional`, one transition at a time, vmapped over the minibatch):

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

The pieces are module-level functions that `make_agent` composes: `make_networks`,
`epsilon_greedy` / `act`, `collect` (through `rlx.replay.collect`), the bootstrap
`targets` per head (`q_targets`, `categorical_targets`, `quantile_targets`), the `loss`
per head (`q_loss`, `categorical_loss`, `quantile_loss`), `dqn_loss` joining them,
`learn_step`, and `collect_and_learn`, the update that the DηN agent
(`agents/ddp/deep.py`) shares. `targets` and `loss` can be replaced by passing a function.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from rlx import distributional as dist
from rlx import replay
from rlx.config import _concrete, config, static, traced
from rlx.envs.check import check_interface
from rlx.envs.wrappers import EpisodeStats, is_discrete
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
    1e-3 and annealed to 0 (why: docs/tuning-notes.md)."""

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
    """C51: DQN with a categorical head of `num_atoms` atoms on [v_min, v_max]; its
    bounded support keeps it stable at PureJaxRL's lr (docs/tuning-notes.md)."""

    head: str = static("c51", "value head: q (DQN), c51 (categorical) or qr (quantile)", choices=HEADS)
    lr: float = traced(2.5e-4, "Adam learning rate (annealed to 0 with anneal_lr)", gt=0)


@config
class QRDQNConfig(DQNConfig):
    """QR-DQN: DQN with a head of `num_atoms` quantiles and the quantile-Huber loss (κ 1),
    with Double-DQN action selection by default (the measurements behind the default
    and the target sync period: docs/tuning-notes.md)."""

    head: str = static("qr", "value head: q (DQN), c51 (categorical) or qr (quantile)", choices=HEADS)
    double_q: bool = static(True, "select the bootstrap action with the online network (Double DQN)")
    num_atoms: int = static(32, "c51: support size; qr: number of quantiles", ge=2)


@struct.dataclass
class DQNParams:
    """DQN's parameters: the online and target Q-networks and the observation statistics."""

    online: Any
    target: Any
    obs_stats: RunningStats


# One stored step (shared with SAC and the DηN agent): obs, action, reward, next_obs
# (the true next observation), terminated, truncated.
Transition = replay.Transition


def epsilon(c: DQNConfig, env_steps: jax.Array, total_steps: int, schedule: str) -> jax.Array:
    """ε (scalar) after `env_steps` (scalar) env steps: from eps_start to eps_end over
    eps_fraction·total_steps.

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


def transition_spec(obs_shape: tuple) -> Transition:
    """Shapes and dtypes of one stored transition with observations `obs_shape`."""
    f = jnp.float32
    s = jax.ShapeDtypeStruct
    return Transition(s(obs_shape, f), s((), jnp.int32), s((), f), s(obs_shape, f), s((), jnp.bool_), s((), jnp.bool_))


def example_transition(env: Any, env_params: Any = None) -> Transition:
    """Shapes and dtypes of one stored transition for `env`."""
    params = env.default_params if env_params is None else env_params
    return transition_spec(env.observation_space(params).shape)


def buffer_bytes(env: Any, cfg: DQNConfig) -> int:
    """Replay memory of one member: `buffer_size * transition size`. A population of P
    members needs P times this."""
    return replay.nbytes(example_transition(env), cfg.buffer_size)


# -- the network and its Q-values ------------------------------------------------------------
class DQNNetworks(NamedTuple):
    """The Q-network and the static facts about it that every piece needs."""

    network: Any  # DiscreteQNetwork: obs [N, *obs] -> [N, A] (q) or [N, A, M] (c51, qr)
    head: str  # q | c51 | qr
    num_actions: int  # A
    num_atoms: int  # M (c51 atoms, qr quantiles; unused by the q head)
    obs_shape: tuple
    normalize_obs: bool


def make_networks(env: Any, cfg: DQNConfig) -> DQNNetworks:
    """The Q-network for `env`'s spaces; one line naming the problem for continuous actions."""
    obs_space = env.observation_space(env.default_params)
    act_space = env.action_space(env.default_params)
    if not is_discrete(act_space):
        raise ValueError(
            f"{type(cfg).__name__} (head {cfg.head!r}) needs discrete actions, but {env.name} has continuous "
            f"(Box) actions of shape {act_space.shape}: use rlx.agents.sac or ppo for continuous envs."
        )
    atoms = None if cfg.head == "q" else cfg.num_atoms
    network = DiscreteQNetwork(act_space.n, cfg.hidden, cfg.activation, atoms)
    return DQNNetworks(network, cfg.head, act_space.n, cfg.num_atoms, obs_space.shape, cfg.normalize_obs)


def observe(nets: DQNNetworks, params: DQNParams, obs: jax.Array) -> jax.Array:
    """What the network sees: `obs` `[..., *obs_shape]` normalised with the running
    statistics, if enabled; the same shape."""
    return normalize(params.obs_stats, obs) if nets.normalize_obs else obs


def support(c: DQNConfig, num_atoms: int) -> jax.Array:
    """C51's fixed support `[M]`: `num_atoms` atoms from v_min to v_max."""
    return dist.categorical_support(c.v_min, c.v_max, num_atoms)


def q_values(nets: DQNNetworks, out: Any, c: DQNConfig) -> jax.Array:
    """Network output `[..., A]` (q) or `[..., A, M]` (c51 logits, qr quantiles) ->
    Q-values `[..., A]`, the mean of the distribution."""
    if nets.head == "q":
        return out
    if nets.head == "c51":
        return jax.nn.softmax(out, -1) @ support(c, nets.num_atoms)
    return out.mean(-1)


# -- acting and collecting ---------------------------------------------------------------------
def uniform_actions(nets: DQNNetworks, key: jax.Array, n: int) -> jax.Array:
    """`n` uniformly random actions `[n]` int32."""
    return jax.random.randint(key, (n,), 0, nets.num_actions, jnp.int32)


def epsilon_greedy_actions(scores: jax.Array, key: jax.Array, eps: jax.Array) -> jax.Array:
    """Scores `[B, A]` -> actions `[B]` int32: uniformly random with probability `eps` (a
    scalar), else `argmax_a scores`. Shared with the DηN agent (its scores: E f(c + Z))."""
    # Three keys, the first unused (greedy actions need none): the split is part of the
    # recorded key stream.
    _, k_rand, k_coin = jax.random.split(key, 3)
    n, num_actions = scores.shape
    greedy = jnp.argmax(scores, -1).astype(jnp.int32)
    random = jax.random.randint(k_rand, (n,), 0, num_actions, jnp.int32)
    return jnp.where(jax.random.uniform(k_coin, (n,)) < eps, random, greedy)


def epsilon_greedy_action(scores: jax.Array, key: jax.Array, eps: jax.Array, deterministic: bool) -> jax.Array:
    """Scores `[A]` of one observation -> one action (int32 scalar): `argmax_a scores`, or
    with `deterministic=False` uniformly random with probability `eps`."""
    greedy = jnp.argmax(scores).astype(jnp.int32)
    if deterministic:
        return greedy
    k_rand, k_coin = jax.random.split(key)
    random = jax.random.randint(k_rand, (), 0, scores.shape[-1], jnp.int32)
    return jnp.where(jax.random.uniform(k_coin) < eps, random, greedy)


def epsilon_greedy(nets: DQNNetworks, params: DQNParams, obs: jax.Array, key: jax.Array, eps: jax.Array,
                   c: DQNConfig) -> jax.Array:  # fmt: skip
    """Batched `obs [B, *obs]` -> actions `[B]` int32: uniformly random with probability
    `eps` (a scalar), else `argmax_a Q(s, a)` of the online network."""
    q = q_values(nets, nets.network.apply(params.online, observe(nets, params, obs), 1), c)
    return epsilon_greedy_actions(q, key, eps)


def act(nets: DQNNetworks, params: DQNParams, obs: jax.Array, key: jax.Array, c: DQNConfig,
        deterministic: bool = True) -> jax.Array:  # fmt: skip
    """One unbatched observation -> one action (int32 scalar): greedy, or ε-greedy with
    ε = eps_end."""
    q = q_values(nets, nets.network.apply(params.online, observe(nets, params, obs[None]), 1)[0], c)
    return epsilon_greedy_action(q, key, c.eps_end, deterministic)


def collect(nets: DQNNetworks, params: DQNParams, env: Any, env_params: Any, carry: tuple, eps: jax.Array,
            c: DQNConfig, num_steps: int) -> tuple[tuple, Transition]:  # fmt: skip
    """`num_steps` ε-greedy steps from `carry = (env_state, obs, key)`. Returns the new
    carry and a replay `Transition` with leaves `[T, B, ...]` (rewards unscaled)."""
    policy = lambda obs, k: epsilon_greedy(nets, params, obs, k, eps, c)  # noqa: E731
    return replay.collect(env, env_params, carry, policy, num_steps)


def warmup(nets: DQNNetworks, env: Any, env_params: Any, carry: tuple, num_steps: int) -> tuple[tuple, Transition]:
    """`collect` with uniformly random actions (the warm-up that fills the buffer)."""
    policy = lambda obs, k: uniform_actions(nets, k, obs.shape[0])  # noqa: E731
    return replay.collect(env, env_params, carry, policy, num_steps)


# -- bootstrap targets, one per head -------------------------------------------------------------
# The default `targets` pieces. Each maps a minibatch of N transitions to the target the
# loss regresses onto:
#     targets(reward [N], discount [N], next_out [N, A(, M)], next_q [N, A], c) -> target
# with `reward` already scaled by reward_scale, `discount = γ·(1 - terminated)`,
# `next_out` the target network's output at s' and `next_q` the Q-values that select
# `a* = argmax next_q` (the target network's, or the online network's with double_q).
def q_targets(reward: jax.Array, discount: jax.Array, next_out: jax.Array, next_q: jax.Array,
              c: DQNConfig) -> jax.Array:  # fmt: skip
    """DQN's target `r + discount·Q̄(s', a*)`, `[N]` (next_out `[N, A]`); as in
    `rlax.double_q_learning` (`rlax.q_learning` when next_q is next_out)."""

    def one(r, d, q_next, q_sel):
        return r + d * q_next[jnp.argmax(q_sel)]

    return jax.vmap(one)(reward, discount, next_out, next_q)


def categorical_targets(reward: jax.Array, discount: jax.Array, next_out: jax.Array, next_q: jax.Array,
                        c: DQNConfig) -> jax.Array:  # fmt: skip
    """C51's target `Π_C law(r + discount·Z̄(s', a*))`: probabilities `[N, M]` on the
    support (next_out: logits `[N, A, M]`); as in `rlax.categorical_double_q_learning`."""
    z = support(c, next_out.shape[-1])

    def one(r, d, logits_next, q_sel):
        probs = jax.nn.softmax(logits_next[jnp.argmax(q_sel)])
        return dist.categorical_project(dist.pushforward(z, r, d), probs, z)

    return jax.vmap(one)(reward, discount, next_out, next_q)


def quantile_targets(reward: jax.Array, discount: jax.Array, next_out: jax.Array, next_q: jax.Array,
                     c: DQNConfig) -> jax.Array:  # fmt: skip
    """QR-DQN's target samples `r + discount·θ̄(s', a*)`, `[N, M]` (next_out: quantiles
    `[N, A, M]`); as in `rlax.quantile_q_learning`."""

    def one(r, d, theta_next, q_sel):
        return dist.pushforward(theta_next[jnp.argmax(q_sel)], r, d)

    return jax.vmap(one)(reward, discount, next_out, next_q)


# -- losses, one per head ------------------------------------------------------------------------
# The default `loss` pieces: `loss(out [N, A(, M)], action [N], target, c) -> scalar`,
# with `out` the online network's output at s and `target` what `targets` returned.
def q_loss(out: jax.Array, action: jax.Array, target: jax.Array, c: DQNConfig) -> jax.Array:
    """`mean ½ δ²`, `δ = target - Q(s, a)`; out `[N, A]`, target `[N]`."""
    td = jax.vmap(lambda q, a, y: y - q[a])(out, action, target)
    return jnp.mean(0.5 * td**2)


def categorical_loss(out: jax.Array, action: jax.Array, target: jax.Array, c: DQNConfig) -> jax.Array:
    """Mean cross-entropy from the target probabilities `[N, M]` to the taken action's
    predicted distribution (out: logits `[N, A, M]`)."""
    losses = jax.vmap(lambda logits, a, p: dist.categorical_cross_entropy(p, logits[a]))(out, action, target)
    return jnp.mean(losses)


def quantile_loss(out: jax.Array, action: jax.Array, target: jax.Array, c: DQNConfig) -> jax.Array:
    """Mean quantile-Huber loss (κ = huber_kappa) of the taken action's quantiles at the
    midpoint levels onto the target samples `[N, M]` (out: quantiles `[N, A, M]`)."""

    def one(theta, a, y):
        taus = dist.quantile_midpoints(theta.shape[-1], theta.dtype)
        return dist.quantile_huber_loss(theta[a], taus, y, c.huber_kappa)

    return jnp.mean(jax.vmap(one)(out, action, target))


TARGETS = {"q": q_targets, "c51": categorical_targets, "qr": quantile_targets}
LOSSES = {"q": q_loss, "c51": categorical_loss, "qr": quantile_loss}


def dqn_loss(nets: DQNNetworks, cfg: DQNConfig, c: DQNConfig, params: DQNParams, online: Any, target_params: Any,
             mb: Transition, targets: Callable, loss: Callable) -> tuple[jax.Array, dict]:  # fmt: skip
    """The TD loss on one minibatch `mb` (leaves `[N, ...]`): `loss(out, action,
    targets(...), c)`. `params` gives the observation statistics; `online` is
    differentiated, `target_params` is the target network. Returns `(loss, {"q": mean
    Q(s, a)})`."""
    obs, next_obs = observe(nets, params, mb.obs), observe(nets, params, mb.next_obs)
    out = nets.network.apply(online, obs, 1)
    next_out = nets.network.apply(target_params, next_obs, 1)
    if cfg.double_q:
        next_q = q_values(nets, nets.network.apply(online, next_obs, 1), c)
    else:
        next_q = q_values(nets, next_out, c)
    next_q, next_out = jax.lax.stop_gradient(next_q), jax.lax.stop_gradient(next_out)
    reward = mb.reward * c.reward_scale
    discount = c.gamma * (1.0 - mb.terminated.astype(jnp.float32))
    # A target is a constant of the regression, whatever `targets` computes it from.
    y = jax.lax.stop_gradient(targets(reward, discount, next_out, next_q, c))
    value = loss(out, mb.action, y, c)
    q_taken = jnp.take_along_axis(q_values(nets, out, c), mb.action[:, None], -1)
    return value, dict(q=jnp.mean(q_taken))


# -- the learn step ----------------------------------------------------------------------------
def learn_step(
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


def collect_and_learn(state: Any, collect: Callable, loss_for: Callable, eps: jax.Array, cfg: DQNConfig,
                      c: DQNConfig, observed: Callable = lambda obs: obs) -> tuple[Any, dict]:  # fmt: skip
    """One update of a DQN-style agent (DQN, DηN) on `state`: `collect(carry) -> (carry,
    traj)` from `carry = (env_state, obs, key)`, the rollout stored and, with
    `normalize_obs`, taken into the running statistics (of `observed(traj.obs)`); then
    `learn_step` with `loss_for(params)` (params with the new statistics) and
    `replay.finish_update`, ε (scalar) among the metrics. Returns `(state, metrics)`."""
    params = state.params
    (env_state, last_obs, key), traj = collect((state.env_state, state.obs, state.key))
    buffer = replay.add_rollout(state.buffer, traj)
    if cfg.normalize_obs:
        params = params.replace(obs_stats=update_stats(params.obs_stats, observed(traj.obs)))
    key, k_learn = jax.random.split(key)
    online, target, opt_state, stats = learn_step(
        loss_for(params), buffer, k_learn, params.online, params.target, state.opt_state, state.update_step, cfg, c,
    )  # fmt: skip
    params = params.replace(online=online, target=target)
    carry = (env_state, last_obs, key)
    return replay.finish_update(state, params, opt_state, buffer, carry, stats, cfg.steps_per_update, epsilon=eps)


# -- init and update ---------------------------------------------------------------------------
def init_state(nets: DQNNetworks, env: Any, cfg: DQNConfig, c: DQNConfig, env_params: Any, key: jax.Array) -> replay.AgentState:
    """The network (target = online), the optimiser, `num_envs` reset envs, and a buffer
    filled by the warm-up phase (`learning_starts // num_envs` uniform-random steps)."""
    key, k_net, k_env, k_warm = jax.random.split(key, 4)
    online = nets.network.init(k_net, jnp.zeros((1,) + nets.obs_shape, jnp.float32), 1)
    params = DQNParams(online, online, init_stats(nets.obs_shape))
    opt_state = make_optimizer(cfg, c).init(online)
    fill = lambda carry, num_steps: warmup(nets, env, env_params, carry, num_steps)  # noqa: E731
    example = transition_spec(nets.obs_shape)
    env_state, obs, buffer, traj = replay.reset_and_fill(env, env_params, (k_env, k_warm), example, fill, cfg)
    if traj is not None and cfg.normalize_obs:
        params = params.replace(obs_stats=update_stats(params.obs_stats, traj.obs))
    return replay.start_state(params, opt_state, buffer, env_state, obs, key, cfg.learning_starts)


def update(nets: DQNNetworks, env: Any, cfg: DQNConfig, c: DQNConfig, state: replay.AgentState, env_params: Any,
           targets: Callable, loss: Callable) -> tuple[replay.AgentState, dict]:  # fmt: skip
    """One update: collect `rollout_steps` ε-greedy steps per env, store them, then
    `learn_step` with `dqn_loss(targets, loss)` (`collect_and_learn`). Returns
    `(state, metrics)`."""
    eps = epsilon(c, state.env_steps, cfg.total_steps, cfg.eps_schedule)

    def collect_steps(carry):
        return collect(nets, state.params, env, env_params, carry, eps, c, cfg.rollout_steps)

    def loss_for(params):
        return lambda online, target, mb, _: dqn_loss(nets, cfg, c, params, online, target, mb, targets, loss)

    return collect_and_learn(state, collect_steps, loss_for, eps, cfg, c)


# -- the agent ---------------------------------------------------------------------------------
def make_agent(env: Any, cfg: DQNConfig, targets: Callable | None = None, loss: Callable | None = None) -> Agent:
    """Build DQN / C51 / QR-DQN (by `cfg.head`) for `env`, which must have discrete
    actions, from the pieces above. Each keyword replaces one piece:

    targets(reward [N], discount [N], next_out [N, A(, M)], next_q [N, A], c) -> target:
        the bootstrap target (default by head: `q_targets` `[N]`, `categorical_targets`
        `[N, M]` probabilities, `quantile_targets` `[N, M]` samples); gradients are
        stopped at its output.
    loss(out [N, A(, M)], action [N], target, c) -> scalar: the regression onto the
        target (default by head: `q_loss`, `categorical_loss`, `quantile_loss`).
    """
    check_interface(env, where="dqn.make_agent")  # the env's methods, spaces and observation, before any jax runs
    env = EpisodeStats(env)
    nets = make_networks(env, cfg)
    targets = TARGETS[cfg.head] if targets is None else targets
    loss = LOSSES[cfg.head] if loss is None else loss
    return replay.agent_from_pieces(nets, env, cfg, init_state, update, act, targets, loss)
