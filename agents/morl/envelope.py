"""Envelope Q-learning (Yang, Sun & Narasimhan 2019), a multi-objective DQN.

One network conditioned on the preference, `Q(s, ω) ∈ R^{A×d}`, covers every
linear preference at once. Its bootstrap target is the *envelope* over actions and
over a sample of preferences (Yang et al., Eq. 5–6, as MORL-Baselines computes it):

    (ω*, a*) = argmax_{ω' ∈ W, a} ω·Q(s', ω')[a]       (online network)
    y(s, ω)  = r + γ(1 - term) Q̄(s', ω*)[a*]            (target network)

for every transition `s` of a minibatch paired with every ω of `W`, `num_sample_w`
preferences drawn afresh for each gradient step. The loss mixes the vector loss
`L_A = mean ||y - Q(s, ω)[a]||²` with the scalarised one `L_B = mean (ω·y - ω·Q(s, ω)[a])²`
as `(1 - λ) L_A + λ L_B`, the homotopy weight λ moving linearly from
`homotopy_start` to `homotopy_end` (Yang et al. Sec. 4 use |·| for `L_B`;
MORL-Baselines, whose form this follows, squares it). Acting: each env follows one
preference per episode, drawn at its start, ε-greedy on `ω·Q(s, ω)`.

Defaults follow MORL-Baselines' `Envelope.__init__`
(`morl_baselines/multi_policy/envelope/envelope.py`, lines 88–110 at commit
a8acdbba, 2026-07-29): lr 3e-4, ε 0.01 throughout, τ 1 with a target copy every
200 steps (soft updates every step when τ ≠ 1, lines 336–337), buffer 1e6, 256×4 MLP,
batch 256, 100 random warm-up steps, 1 gradient step per env step, γ 0.99, gradient
clip 1.0, 4 sampled preferences, λ 0 → 1 with no decay (so λ stays 0). Preferences
are `|N(0, I)|` normalised to the simplex, as its `random_weights(dist="gaussian")`.
The loss is its lines 307–313; the envelope target its `envelope_target`. Upstream
counts the target period in env steps and updates once per env step; here it counts
gradient steps (the same with one env and one gradient step per env step).
Not implemented: prioritised replay (upstream's default `per=True`); the buffer
here is uniform.

Pieces: `sample_preferences`, `PreferenceEnv` (the preference as part of the
observation), `make_networks`, `q_values`, `scalarised_scores`, `act`,
`envelope_targets`, `envelope_loss`, `linear_decay`, `learn_step`, `update`,
`evaluate_front`. `make_agent` composes them; `targets` and `loss` can be replaced.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from rlx import replay
from rlx.agents import dqn
from rlx.config import config, static, traced
from rlx.envs.core import Box
from rlx.envs.wrappers import EpisodeStats, Wrapper, is_discrete
from rlx.evaluation import episode_limit, evaluate
from rlx.networks import ACTIVATIONS, DiscreteQNetwork
from rlx.types import Agent


@config
class EnvelopeConfig(replay.ReplaySchedule):
    """Envelope Q-learning; defaults from MORL-Baselines (module docstring), with 4 envs."""

    num_envs: int = static(4, "parallel environments per member", ge=1)
    rollout_steps: int = static(1, "env steps per env in one update", ge=1)
    utd: float = static(1.0, "gradient steps per env step (upstream's gradient_updates)", gt=0)
    total_steps: int = static(100_000, "env steps per member in a full run, warm-up included", ge=1)
    learning_starts: int = static(100, "warm-up env steps per member with uniform random actions", ge=0)
    buffer_size: int = static(1_000_000, "replay capacity (transitions per member)", ge=1)
    batch_size: int = static(256, "transitions per gradient step (each paired with num_sample_w preferences)", ge=1)
    num_sample_w: int = static(4, "preferences sampled per gradient step for the envelope", ge=1)
    hidden: tuple = static((256, 256, 256, 256), "hidden layer widths", ge=1)
    activation: str = static("relu", "hidden activation", choices=tuple(ACTIVATIONS))
    anneal_lr: bool = static(False, "linearly decay the learning rate to 0 (upstream: constant)")

    lr: float = traced(3e-4, "Adam learning rate", gt=0)
    gamma: float = traced(0.99, "discount", gt=0, le=1)
    tau: float = traced(1.0, "target ← τ·online + (1-τ)·target; every gradient step when τ < 1", ge=0, le=1)
    target_update_period: float = traced(200.0, "gradient steps between target copies when τ = 1", ge=1)
    eps_start: float = traced(0.01, "initial exploration ε", ge=0, le=1)
    eps_end: float = traced(0.01, "final exploration ε", ge=0, le=1)
    eps_decay_steps: float = traced(1.0, "env steps after the warm-up over which ε decays", ge=1)
    homotopy_start: float = traced(0.0, "initial weight λ of the scalarised loss", ge=0, le=1)
    homotopy_end: float = traced(1.0, "final weight λ of the scalarised loss", ge=0, le=1)
    homotopy_decay_steps: float = traced(1e12, "env steps after the warm-up over which λ moves (1e12: never)", ge=1)
    max_grad_norm: float = traced(1.0, "global gradient-norm clip", gt=0)
    reward_scale: float = traced(1.0, "rewards are multiplied by this", gt=0)

    def check(self) -> None:
        replay.check_schedule(self)


@struct.dataclass
class EnvelopeParams:
    """The online and target networks `Q(s, ω)`."""

    online: Any
    target: Any


# -- preferences -----------------------------------------------------------------------------------
def sample_preferences(key: jax.Array, n: int, d: int) -> jax.Array:
    """`n` preferences `[n, d]` on the simplex: `|z| / ||z||_1`, `z ~ N(0, I_d)`."""
    z = jnp.abs(jax.random.normal(key, (n, d)))
    return z / jnp.sum(z, -1, keepdims=True)


@struct.dataclass
class PreferenceState:
    """A `PreferenceEnv` state: the inner env's state and this episode's ω `[d]`."""

    inner: Any
    weights: jax.Array  # [d] the preference this episode follows


@struct.dataclass
class FixedPreference:
    """Params of a `PreferenceEnv(fixed=True)`: the inner env's params and ω `[d]`."""

    inner: Any
    weights: jax.Array


class PreferenceEnv(Wrapper):
    """Appends the episode's preference ω `[d]` to the observation: obs `[o + d]`.

    `fixed=False`: ω is drawn (`sample_preferences`) at every episode start; params
    are the inner env's. `fixed=True`: ω is `params.weights` (`FixedPreference`),
    for evaluation, vmappable over ω. `info["final_obs"]` carries the finished
    episode's ω."""

    def __init__(self, env: Any, fixed: bool = False):
        super().__init__(env)
        self.fixed = fixed
        self.d = int(env.reward_dim)

    def _split(self, params):
        return (params.inner, params.weights) if self.fixed else (params, None)

    def _draw(self, key, w):
        return w if self.fixed else sample_preferences(key, 1, self.d)[0]

    def reset(self, key, params=None):
        inner_params, w = self._split(params)
        k_env, k_w = jax.random.split(key)
        obs, inner = self.env.reset(k_env, inner_params)
        w = self._draw(k_w, w)
        return jnp.concatenate([obs, w]), PreferenceState(inner, w)

    def step(self, key, state, action, params=None):
        inner_params, w = self._split(params)
        k_env, k_w = jax.random.split(key)
        obs, inner, reward, term, trunc, info = self.env.step(k_env, state.inner, action, inner_params)
        w_next = jnp.where(term | trunc, self._draw(k_w, w), state.weights)
        info = {**info, "final_obs": jnp.concatenate([info["final_obs"], state.weights])}
        return jnp.concatenate([obs, w_next]), PreferenceState(inner, w_next), reward, term, trunc, info

    def observation_space(self, params=None):
        inner = self.env.observation_space(self._split(params)[0] if params is not None else None)
        shape = (inner.shape[0] + self.d,)
        low = np.concatenate([np.broadcast_to(np.asarray(inner.low, float), inner.shape), np.zeros(self.d)])
        high = np.concatenate([np.broadcast_to(np.asarray(inner.high, float), inner.shape), np.ones(self.d)])
        return Box(tuple(low), tuple(high), shape, jnp.float32)


# -- the network -----------------------------------------------------------------------------------
class EnvelopeNetworks(NamedTuple):
    """The preference-conditioned Q-network and the static facts about it."""

    network: Any  # [N, o + d] -> [N, A, d]
    num_actions: int  # A
    reward_dim: int  # d
    obs_dim: int  # o (without the preference)


def make_networks(env: Any, cfg: EnvelopeConfig) -> EnvelopeNetworks:
    """`Q(s, ω)`: an MLP on `[s, ω]` with `A·d` outputs. (DiscreteQNetwork's per-action
    head of size `num_atoms` serves as the `d` objectives.)"""
    d = getattr(env, "reward_dim", None)
    act_space = env.action_space(env.default_params)
    obs_space = env.observation_space(env.default_params)
    if not d or d < 2:
        raise ValueError(f"Envelope needs a vector-reward env (reward_dim >= 2); {env.name} has reward_dim {d}.")
    if not is_discrete(act_space) or len(obs_space.shape) != 1:
        raise ValueError(f"Envelope needs discrete actions and flat observations; {env.name} has "
                         f"{type(act_space).__name__} actions and observations of shape {obs_space.shape}.")  # fmt: skip
    network = DiscreteQNetwork(act_space.n, cfg.hidden, cfg.activation, num_atoms=d)
    return EnvelopeNetworks(network, act_space.n, d, obs_space.shape[0])


def q_values(nets: EnvelopeNetworks, net_params: Any, obs: jax.Array, w: jax.Array) -> jax.Array:
    """`Q(s, ω)`: obs `[N, o]`, w `[N, d]` -> `[N, A, d]`."""
    return nets.network.apply(net_params, jnp.concatenate([obs, w], -1), 1)


def scalarised_scores(nets: EnvelopeNetworks, net_params: Any, obs_w: jax.Array) -> jax.Array:
    """`ω·Q(s, ω)` `[N, A]` for observations with their preference `[N, o + d]`."""
    obs, w = obs_w[..., : nets.obs_dim], obs_w[..., nets.obs_dim :]
    return jnp.einsum("nad,nd->na", q_values(nets, net_params, obs, w), w)


def act(nets: EnvelopeNetworks, params: EnvelopeParams, obs: jax.Array, key: jax.Array, c: EnvelopeConfig,
        deterministic: bool = True) -> jax.Array:  # fmt: skip
    """One observation with its preference `[o + d]` -> one action: `argmax_a ω·Q(s, ω)`,
    or ε-greedy with ε = eps_end."""
    scores = scalarised_scores(nets, params.online, obs[None])[0]
    return dqn.epsilon_greedy_action(scores, key, c.eps_end, deterministic)


# -- target and loss -------------------------------------------------------------------------------
def envelope_targets(reward: jax.Array, discount: jax.Array, next_online: jax.Array, next_target: jax.Array,
                     weights: jax.Array) -> jax.Array:  # fmt: skip
    """The envelope target `y [N, K, d]` for every transition n and preference ω_k.

    reward `[N, d]`, discount `[N]` (γ·(1 - term)), weights `[K, d]`, and the network
    outputs at s' under every sampled preference: `next_online`, `next_target`
    `[N, K, A, d]` (index k of axis 1: conditioned on ω_k). For ω_k the chosen
    `(j*, a*) = argmax_{j, a} ω_k·next_online[n, j, a]` (first maximum, j major) and
    `y = r + discount · next_target[n, j*, a*]`."""
    n, k, a, d = next_online.shape
    scores = jnp.einsum("njad,kd->nkja", next_online, weights).reshape(n, k, k * a)
    best = jnp.argmax(scores, -1)  # [N, K] over (j, a), j major
    flat_target = next_target.reshape(n, k * a, d)
    chosen = jnp.take_along_axis(flat_target, best[..., None], axis=1)  # [N, K, d]
    return reward[:, None, :] + discount[:, None, None] * chosen


def envelope_loss(q_taken: jax.Array, target: jax.Array, weights: jax.Array, homotopy: jax.Array) -> jax.Array:
    """`(1 - λ)·mean (y - Q)² + λ·mean (ω·y - ω·Q)²`; q_taken and target `[N, K, d]`,
    weights `[K, d]`, λ = homotopy (scalar)."""
    vector = jnp.mean((target - q_taken) ** 2)
    scalar = jnp.mean((jnp.einsum("nkd,kd->nk", target - q_taken, weights)) ** 2)
    return (1.0 - homotopy) * vector + homotopy * scalar


def td_loss(nets: EnvelopeNetworks, c: EnvelopeConfig, online: Any, target_params: Any, mb: replay.Transition,
            key: jax.Array, homotopy: jax.Array, num_sample_w: int, targets: Callable,
            loss: Callable) -> tuple[jax.Array, dict]:  # fmt: skip
    """The loss on one minibatch (leaves `[N, ...]`, stored obs `[N, o + d]`): the stored
    preference is replaced by `num_sample_w` fresh ones, every transition paired with
    each. Returns `(loss, {"q": mean ω·Q(s, ω)[a]})`."""
    o, d = nets.obs_dim, nets.reward_dim
    w = sample_preferences(key, num_sample_w, d)  # [K, d]
    n, k = mb.action.shape[0], num_sample_w
    rep = lambda x: jnp.repeat(x[:, None], k, 1).reshape((n * k,) + x.shape[1:])  # noqa: E731  [N*K, ...] n major
    w_nk = jnp.tile(w, (n, 1))  # [N*K, d]: row n*K + k is ω_k
    q = q_values(nets, online, rep(mb.obs[:, :o]), w_nk).reshape(n, k, nets.num_actions, d)
    q_taken = jnp.take_along_axis(q, mb.action[:, None, None, None], axis=2)[:, :, 0]  # [N, K, d]
    w_next = jnp.tile(w, (n, 1))
    next_online = q_values(nets, online, rep(mb.next_obs[:, :o]), w_next).reshape(n, k, nets.num_actions, d)
    next_target = q_values(nets, target_params, rep(mb.next_obs[:, :o]), w_next).reshape(n, k, nets.num_actions, d)
    discount = c.gamma * (1.0 - mb.terminated.astype(jnp.float32))
    y = jax.lax.stop_gradient(targets(mb.reward * c.reward_scale, discount, jax.lax.stop_gradient(next_online),
                                      next_target, w))  # fmt: skip
    value = loss(q_taken, y, w, homotopy)
    return value, dict(q=jnp.mean(jnp.einsum("nkd,kd->nk", q_taken, w)))


def linear_decay(start: jax.Array, end: jax.Array, decay_steps: jax.Array, step: jax.Array, warmup: int) -> jax.Array:
    """From `start` at `warmup` env steps to `end` at `warmup + decay_steps`, then flat
    (MORL-Baselines' `linearly_decaying_value`); scalars."""
    frac = jnp.clip((step.astype(jnp.float32) - warmup) / decay_steps, 0.0, 1.0)
    return start + (end - start) * frac


# -- learning ----------------------------------------------------------------------------------------
def learn_step(loss_fn: Callable, buffer: replay.ReplayState, key: jax.Array, online: Any, target: Any,
               opt_state: Any, update_step: jax.Array, cfg: EnvelopeConfig, c: EnvelopeConfig):  # fmt: skip
    """`cfg.gradient_steps` gradient steps on fresh minibatches; after each the target
    moves by τ when τ < 1, or is copied every `target_update_period` steps when τ = 1.
    `update_step` (scalar int32) counts updates so far. `loss_fn(online, target, mb, key)`.
    Returns `(online, target, opt_state, stats)`, stats leaves `[gradient_steps]`."""
    opt = dqn.make_optimizer(cfg, c)
    n = cfg.gradient_steps

    def step(carry, xs):
        online, target, opt_state = carry
        k, i = xs
        k_mb, k_w = jax.random.split(k)
        mb = replay.sample(buffer, k_mb, cfg.batch_size)
        (value, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(online, target, mb, k_w)
        updates, opt_state = opt.update(grads, opt_state, online)
        online = optax.apply_updates(online, updates)
        done = (update_step * n + i + 1).astype(jnp.float32)
        sync = (c.tau < 1.0) | (jnp.mod(done, jnp.round(c.target_update_period)) == 0)
        target = jax.tree.map(lambda o, t: jnp.where(sync, c.tau * o + (1.0 - c.tau) * t, t), online, target)
        return (online, target, opt_state), dict(loss=value, **aux)

    xs = (jax.random.split(key, n), jnp.arange(n, dtype=jnp.int32))
    (online, target, opt_state), stats = jax.lax.scan(step, (online, target, opt_state), xs)
    return online, target, opt_state, stats


def transition_spec(obs_dim: int, d: int) -> replay.Transition:
    """The replay buffer's item: obs `[obs_dim + d]` (state and ω), action `[]`, vector
    reward `[d]`, next obs `[obs_dim + d]`, terminated and truncated flags `[]`."""
    s, f = jax.ShapeDtypeStruct, jnp.float32
    return replay.Transition(s((obs_dim + d,), f), s((), jnp.int32), s((d,), f), s((obs_dim + d,), f),
                             s((), jnp.bool_), s((), jnp.bool_))  # fmt: skip


def init_state(nets: EnvelopeNetworks, env: Any, cfg: EnvelopeConfig, c: EnvelopeConfig, env_params: Any,
               key: jax.Array) -> replay.AgentState:  # fmt: skip
    """Networks (target = online), optimiser, `num_envs` reset envs and a buffer filled
    by `learning_starts // num_envs` uniform-random steps per env."""
    key, k_net, k_env, k_warm = jax.random.split(key, 4)
    online = nets.network.init(k_net, jnp.zeros((1, nets.obs_dim + nets.reward_dim), jnp.float32), 1)
    opt_state = dqn.make_optimizer(cfg, c).init(online)

    def fill(carry, num_steps):
        policy = lambda obs, k: jax.random.randint(k, (obs.shape[0],), 0, nets.num_actions, jnp.int32)  # noqa: E731
        return replay.collect(env, env_params, carry, policy, num_steps)

    example = transition_spec(nets.obs_dim, nets.reward_dim)
    env_state, obs, buffer, _ = replay.reset_and_fill(env, env_params, (k_env, k_warm), example, fill, cfg)
    return replay.start_state(EnvelopeParams(online, online), opt_state, buffer, env_state, obs, key,
                              cfg.learning_starts)  # fmt: skip


def update(nets: EnvelopeNetworks, env: Any, cfg: EnvelopeConfig, c: EnvelopeConfig, state: replay.AgentState,
           env_params: Any, targets: Callable, loss: Callable) -> tuple[replay.AgentState, dict]:  # fmt: skip
    """One update: `rollout_steps` ε-greedy steps per env (each on its episode's ω),
    stored; then `learn_step` on the envelope loss. Metrics add ε and λ."""
    eps = linear_decay(c.eps_start, c.eps_end, c.eps_decay_steps, state.env_steps, cfg.learning_starts)
    lam = linear_decay(c.homotopy_start, c.homotopy_end, c.homotopy_decay_steps, state.env_steps, cfg.learning_starts)
    params = state.params

    def policy(obs, k):
        return dqn.epsilon_greedy_actions(scalarised_scores(nets, params.online, obs), k, eps)

    (env_state, last_obs, key), traj = replay.collect(env, env_params, (state.env_state, state.obs, state.key),
                                                      policy, cfg.rollout_steps)  # fmt: skip
    buffer = replay.add_rollout(state.buffer, traj)
    key, k_learn = jax.random.split(key)

    def loss_fn(online, target, mb, k):
        return td_loss(nets, c, online, target, mb, k, lam, cfg.num_sample_w, targets, loss)

    online, target, opt_state, stats = learn_step(loss_fn, buffer, k_learn, params.online, params.target,
                                                  state.opt_state, state.update_step, cfg, c)  # fmt: skip
    return replay.finish_update(state, EnvelopeParams(online, target), opt_state, buffer, (env_state, last_obs, key),
                                stats, cfg.steps_per_update, epsilon=eps, homotopy=lam)  # fmt: skip


def make_agent(env: Any, cfg: EnvelopeConfig, targets: Callable | None = None, loss: Callable | None = None) -> Agent:
    """Envelope Q-learning on a vector-reward env with discrete actions. The agent's env
    is `EpisodeStats(PreferenceEnv(env))`: its observations carry the episode's
    preference, and `act` takes such an observation `[o + d]`.

    targets(reward [N, d], discount [N], next_online [N, K, A, d], next_target [N, K, A, d],
        weights [K, d]) -> [N, K, d]: the bootstrap target (default `envelope_targets`).
    loss(q_taken [N, K, d], target [N, K, d], weights [K, d], homotopy) -> scalar
        (default `envelope_loss`)."""
    nets = make_networks(env, cfg)
    wrapped = EpisodeStats(PreferenceEnv(env))
    targets = envelope_targets if targets is None else targets
    loss = envelope_loss if loss is None else loss
    return replay.agent_from_pieces(nets, wrapped, cfg, init_state, update, act, targets, loss)


def evaluate_front(agent: Agent, params: Any, c: EnvelopeConfig, env: Any, env_params: Any, key: jax.Array,
                   weights: jax.Array, episodes: int = 1, gamma: float = 1.0) -> dict[str, jax.Array]:  # fmt: skip
    """Greedy episodes of the policy for each preference of `weights [W, d]`: mean
    `discounted_return` (with `gamma`) and `return` `[W, d]`. Pure, vmappable over
    params and c; `env` is the raw vector-reward env."""
    fixed = PreferenceEnv(env, fixed=True)
    horizon = episode_limit(env, env_params)

    def one(w, k):
        out = evaluate(agent, params, c, fixed, FixedPreference(env_params, w), k, episodes, horizon, gamma)
        return out["discounted_return"].mean(0), out["return"].mean(0)

    disc, undisc = jax.vmap(one)(weights, jax.random.split(key, weights.shape[0]))
    return {"discounted_return": disc, "return": undisc}
