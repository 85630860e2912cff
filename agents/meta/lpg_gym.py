"""LPG and TA-LPG on any discrete-action rlx env (gymnax CartPole, Acrobot, MinAtar): the
agent that meta-tests a learned policy gradient away from the grid worlds it was trained on.

The agent is an MLP torso over the flattened observation with two linear heads: policy
logits `[A]` and the logits of a categorical prediction y `[Y]` (`y_bins`, the meta-network's
size). Each update collects `num_steps` steps from `num_envs` envs and takes one Adam step
(global-norm clipped) on the loss of `rlx.agents.meta.lpg.lpg_loss`, the same function the
grid-world agent uses:

    L = -mean(π̂ · log π(a|s)) + kl_coef · mean(KL(y(s) ‖ ŷ)),

where the meta-network reads `[r, done, π(a|s), φ(y_t), (1 - done) φ(y_{t+1})]` backwards in
time (TA-LPG also reads n/N and log N / log 1000, with N = `num_updates` of the run) and
gives π̂ and ŷ, held fixed. `update_rule = "a2c"` makes the y head a value head and trains
with `lpg.a2c_loss` (truncation-aware GAE, entropy bonus): the hand-designed baseline.

A2C's value head sits on a separate critic torso of the same widths. Both heads start at
zero: the first policy and y are uniform, as for the grid agent, so an LPG whose π̂ head is
zero (`lpg.init_params`, "untrained") never moves the policy.

`make_agent(env, cfg)` is an rlx `Agent`; `make_train(env, cfg)` returns the core's
`train(key, cfg, env_params) -> (state, metrics)`, pure and jittable, with one row per
update in `metrics` (`episode_return`, `env_steps`, `policy_loss`, ...), vmappable over keys.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlx import rollout
from rlx.agents.meta import lpg
from rlx.config import config, static, static_part, traced
from rlx.envs.wrappers import EpisodeStats, episode_summary, is_discrete
from rlx.types import Agent

ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh}


@config
class LPGGymConfig(lpg.RuleFields):
    """The meta-test agent: rollouts, network, optimiser, and the rule that trains it."""

    num_envs: int = static(16, "parallel environments", ge=1)
    num_steps: int = static(20, "rollout length per update (the meta-network's sequence)", ge=1)
    total_steps: int = static(100_000, "env steps in a full run", ge=1)
    hidden: tuple = static((64, 64), "torso MLP widths (LPG meta-tests use 64, 64 for classic control; 256, 256 for MinAtar)", ge=1)
    activation: str = static("relu", "torso activation", choices=tuple(ACTIVATIONS))
    lr: float = traced(1e-3, "Adam learning rate", gt=0)
    max_grad_norm: float = traced(0.5, "global gradient-norm clip", gt=0)

    def check(self) -> None:
        self.check_rule("lpg.init_params or a saved file (lpg_gym.meta_fields gives the matching shape fields)")
        name = type(self).__name__
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"{name}.hidden = {self.hidden!r} is invalid: at least one width, each >= 1.")
        if self.total_steps < self.num_envs * self.num_steps:
            raise ValueError(f"{name}.total_steps = {self.total_steps} is invalid: it must be >= "
                             f"num_envs*num_steps = {self.num_envs * self.num_steps} (one update).")  # fmt: skip

    @property
    def num_updates(self) -> int:
        return self.total_steps // (self.num_envs * self.num_steps)


def meta_fields(params: dict) -> dict:
    """The static LPGGymConfig fields that fit a meta-network: temporal, meta_hidden,
    y_bins, phi_hidden (read from its shapes)."""
    missing = {"gru_wi", "gru_wh", "y_w", "phi_w1"} - set(params)
    if missing:
        raise ValueError(f"not an LPG meta-network: it lacks {sorted(missing)}; it has {sorted(params)}.")
    d = np.shape(params["gru_wi"])[-2]
    if d not in (lpg.input_size(False), lpg.input_size(True)):
        raise ValueError(f"gru_wi reads {d} inputs: an LPG network reads {lpg.input_size(False)}, TA-LPG "
                         f"{lpg.input_size(True)}.")  # fmt: skip
    return dict(temporal=d == lpg.input_size(True), meta_hidden=int(np.shape(params["gru_wh"])[-2]),
                y_bins=int(np.shape(params["y_w"])[-1]), phi_hidden=int(np.shape(params["phi_w1"])[-1]))  # fmt: skip


class GymState(NamedTuple):
    """The LPG-trained (or A2C) agent's state on a gymnax env: the env batch is `[B]`."""

    params: dict  # {"torso": [(w, b), ...], "pi": (w, b), "y": (w, b)} (A2C: "y" is the value head on "critic")
    opt_state: Any
    env_state: Any  # [B], with episode statistics
    obs: jax.Array  # [B, *obs_shape], as the env gives it
    key: jax.Array
    update_step: jax.Array  # int32: updates done so far
    env_steps: jax.Array  # int32


def check_env(env: Any) -> tuple[int, int]:
    """`(num_actions, obs_dim)`; raises before any compile unless the env's actions are
    discrete and its reward is a scalar."""
    name = getattr(env, "name", type(env).__name__)
    act_space = env.action_space(env.default_params)
    if not is_discrete(act_space):
        raise ValueError(
            f"{name} has continuous actions ({type(act_space).__name__}, shape {getattr(act_space, 'shape', None)}): "
            "the LPG agent's policy is categorical, so it needs a discrete-action env (gymnax CartPole, Acrobot, "
            "MinAtar, ...). Meta-test continuous control with a PPO drift instead."
        )
    if getattr(env, "reward_dim", None):
        raise ValueError(f"{name} has vector rewards (reward_dim={env.reward_dim}): LPG reads a scalar reward.")
    return int(act_space.n), int(np.prod(env.observation_space(env.default_params).shape))


def _torso(layers, x, activation: str):
    for w, b in layers:
        x = ACTIVATIONS[activation](x @ w + b)
    return x


def forward(params: dict, x: jax.Array, activation: str) -> tuple[jax.Array, jax.Array]:
    """x [..., obs_dim] -> (policy logits [..., A], y logits [..., Y] or value [..., 1])."""
    h = _torso(params["torso"], x, activation)
    h_y = _torso(params["critic"], x, activation) if "critic" in params else h
    return h @ params["pi"][0] + params["pi"][1], h_y @ params["y"][0] + params["y"][1]


def init_network(key: jax.Array, cfg: LPGGymConfig, obs_dim: int, num_actions: int) -> dict:
    """Torso (He init for relu, LeCun for tanh: unit-scale features at the heads) and zero
    heads; A2C's critic gets a torso of its own."""
    gain = 2.0 if cfg.activation == "relu" else 1.0

    def init_torso(key):
        sizes = (obs_dim, *cfg.hidden)
        ks = jax.random.split(key, len(sizes) - 1)
        return [(jax.random.normal(k, (a, b)) * np.sqrt(gain / a), jnp.zeros(b)) for k, a, b in zip(ks, sizes[:-1], sizes[1:])]

    k_torso, k_critic = jax.random.split(key)
    zero = lambda n: (jnp.zeros((cfg.hidden[-1], n)), jnp.zeros(n))  # noqa: E731
    params = {"torso": init_torso(k_torso), "pi": zero(num_actions), "y": zero(cfg.y_bins if cfg.update_rule == "lpg" else 1)}
    if cfg.update_rule == "a2c":
        # A2C's critic has its own torso (as in PureJaxRL's actor-critic): on a shared one
        # the value loss, with targets near -100 on Acrobot, drives the features so hard
        # that the policy collapses to one action within a few thousand steps.
        params["critic"] = init_torso(k_critic)
    return params


def make_optimizer(c: LPGGymConfig):
    """Adam at `c.lr` after clipping the global gradient norm to `c.max_grad_norm`."""
    return optax.chain(optax.clip_by_global_norm(c.max_grad_norm), optax.adam(c.lr))


def make_agent(env: Any, cfg: LPGGymConfig) -> Agent:
    """The LPG (or A2C) agent for `env` (discrete actions, scalar reward: `check_env`)."""
    num_actions, obs_dim = check_env(env)
    env = EpisodeStats(env)
    loss_fn = lpg.lpg_loss if cfg.update_rule == "lpg" else lpg.a2c_loss
    num_updates = cfg.num_updates
    batch = cfg.num_envs * cfg.num_steps
    forward_fn = functools.partial(forward, activation=cfg.activation)

    def flat(obs, lead: int):
        return obs.reshape(obs.shape[:lead] + (obs_dim,)).astype(jnp.float32)

    def init(key, c: LPGGymConfig, env_params) -> GymState:
        key, k_net, k_env = jax.random.split(key, 3)
        params = init_network(k_net, cfg, obs_dim, num_actions)
        obs, env_state = jax.vmap(env.reset, (0, None))(jax.random.split(k_env, cfg.num_envs), env_params)
        zero = jnp.zeros((), jnp.int32)
        return GymState(params, make_optimizer(c).init(params), env_state, obs, key, zero, zero)

    def update(state: GymState, c: LPGGymConfig, env_params):
        params = state.params

        def keep(step: rollout.Step) -> lpg.Rollout:
            done = step.terminated | step.truncated
            # The true next observation: the finished episode's last one where it ended.
            true_next = jnp.where(done[:, None], flat(step.final_obs, 1), flat(step.next_obs, 1))
            return lpg.Rollout(flat(step.obs, 1), step.action, step.reward, step.terminated, done, true_next)

        def policy(obs, key):
            return jax.random.categorical(key, forward_fn(params, flat(obs, 1))[0])

        (env_state, obs, key), traj = rollout.collect(
            env, env_params, (state.env_state, state.obs, state.key), policy, cfg.num_steps, keep
        )
        progress = state.update_step.astype(jnp.float32) / num_updates
        grads, info = jax.grad(loss_fn, has_aux=True)(params, traj, c, progress, jnp.float32(num_updates), forward_fn)
        updates, opt_state = make_optimizer(c).update(grads, state.opt_state, params)
        env_steps = state.env_steps + batch
        episode_return, episodes = episode_summary(env_state)
        logp = jax.nn.log_softmax(forward_fn(params, traj.obs)[0])
        entropy = -jnp.mean(jnp.sum(jnp.exp(logp) * logp, -1))  # of the rollout's policy: shows a collapse
        metrics = dict(info, env_steps=env_steps, episode_return=episode_return, episodes=episodes,
                       reward_per_step=jnp.mean(traj.reward), entropy=entropy)  # fmt: skip
        new = GymState(optax.apply_updates(params, updates), opt_state, env_state, obs, key, state.update_step + 1, env_steps)
        return new, metrics

    def act(params, obs, key, c: LPGGymConfig, deterministic: bool = True):
        """One unbatched observation -> one action."""
        logits = forward_fn(params, flat(obs[None], 1))[0][0]
        return jnp.argmax(logits) if deterministic else jax.random.categorical(key, logits)

    return Agent(init=init, update=update, act=act, policy_params=lambda s: s.params, num_updates=lambda c: c.num_updates,
                 static=static_part(cfg))


def make_train(env: Any, cfg: LPGGymConfig):
    """`train(key, cfg, env_params) -> (state, metrics {name: [num_updates]})`."""
    from rlx.train import make_train as core_make_train

    return core_make_train(make_agent(env, cfg), cfg)
