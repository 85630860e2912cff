"""LPG and TA-LPG: a learned policy gradient (Oh et al. 2020; Jackson et al. 2023, 2024).

The meta-network reads an agent's trajectory `[T, B]` step by step,

    x_t = [r_t, done_t, π(a_t|s_t), φ(y(s_t)), (1 - done_t) φ(y(s_{t+1}))]
          (+ [n/N, log N / log 1000] for TA-LPG)

with φ a shared Dense(16) → relu → Dense(1) over the agent's categorical prediction y
(softmax over `y_bins`), and runs a GRU over it **backwards in time**, reset at episode
ends (a step that ended an episode sees nothing of the next one). log N is divided by
log 1000 so that, like n/N and the per-step inputs, it lies in [0, 1] for lifetimes up to
1000: raw, it (2.3 to 5.5 for N = 10 to 250) is a large constant input that saturates the
GRU's gates and drowns the per-step signals the rule must read. Its heads give a
scalar π̂_t and a softmax ŷ_t. The agent (a policy and a y-prediction, linear over the
observation for tabular levels) then takes one SGD step on

    L = -mean(π̂ · log π(a|s)) + kl_coef · mean(KL(y(s) ‖ ŷ)),

with π̂ and ŷ held fixed (stop-gradient); π̂ > 0 makes an action more likely. `update_rule
= "a2c"` trains the same agent with A2C instead (a value head in place of y), which is
GROOVE's antagonist.

`make_train(env, cfg)` returns `train(key, cfg, level) -> (state, metrics)`: a fresh agent
trained for the level's **full** lifetime N (`level.lifetime`, or `cfg.lifetime` when > 0),
as a `lax.fori_loop` of exactly N updates. `level` may be a batch `[L]` of levels (run
with vmap; metrics averaged). `metrics["episode_return"][-1]` is the final policy's exact
expected return divided by the level's optimum, so the function is a `MetaTask.train` for
`rlx.agents.meta.es.MetaTrainer` over the traced field `lpg_params`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rlx import rollout as rollout_lib
from rlx.config import config, static, traced
from rlx.envs import meta_grid as mg
from rlx.returns import gae

RULES = ("lpg", "a2c")
LOG_N_SCALE = float(np.log(1000.0))  # TA-LPG reads log N / log 1000


@dataclasses.dataclass(frozen=True)
class RuleFields:
    """The fields of the rule that trains an agent, shared by the grid-world agent
    (`LPGConfig`) and the gym one (`lpg_gym.LPGGymConfig`): the meta-network's shape and
    parameters for the lpg rule, A2C's coefficients for the a2c one."""

    y_bins: int = static(8, "bins of the agent's categorical prediction y (the meta-network's)", ge=2)
    meta_hidden: int = static(256, "GRU units of the meta-network", ge=1)
    phi_hidden: int = static(16, "units of φ, the embedding of y", ge=1)
    temporal: bool = static(False, "TA-LPG: the meta-network also sees n/N and log N / log 1000")
    update_rule: str = static("lpg", "lpg (the learned rule) or a2c (the hand-designed baseline, GROOVE's antagonist)",
                              choices=RULES)
    lpg_params: Any = traced(None, "the meta-network (init_params or a saved ES mean); what ES optimises")
    time_inputs: float = traced(1.0, "multiplies the TA inputs; 0 makes a TA-LPG network an LPG one in the same compiled program", ge=0)
    kl_coef: float = traced(0.5, "weight of KL(y ‖ ŷ)", ge=0)
    gamma: float = traced(0.99, "A2C discount", ge=0, le=1)
    lam: float = traced(0.95, "A2C GAE λ", ge=0, le=1)
    ent_coef: float = traced(0.01, "A2C entropy bonus", ge=0)

    def check_rule(self, sources: str = "lpg.init_params") -> None:
        """Raise unless the lpg rule has a meta-network of the configured shape;
        `sources` says where one comes from."""
        if self.update_rule == "lpg":
            name = type(self).__name__
            if self.lpg_params is None:
                raise ValueError(f"{name}.lpg_params is None: the lpg rule needs a meta-network, from {sources}.")
            check_params(self.lpg_params, self, f"{name}.lpg_params")


@config
class LPGConfig(RuleFields):
    """The inner loop: rollouts, the agent, its update rule and the meta-network's shape."""

    num_envs: int = static(8, "parallel episodes per agent", ge=1)
    num_steps: int = static(20, "rollout length per update", ge=1)
    hidden: tuple = static((), "agent MLP widths; () is linear (the tabular agent)", ge=1, items=int)
    max_lifetime: int = static(250, "longest lifetime allowed; longer levels fail loudly (NaN score)", ge=1)
    lifetime: int = traced(0, "updates per inner run; 0 = the level's own lifetime", ge=0)
    lr_pi: float = traced(40.0, "SGD learning rate of the policy", gt=0)
    lr_y: float = traced(4.0, "SGD learning rate of the y-prediction (or the A2C critic)", gt=0)

    def check(self) -> None:
        self.check_rule()
        name = type(self).__name__
        if any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"{name}.hidden = {self.hidden!r} is invalid: widths must be >= 1.")
        c = _concrete_int(self.lifetime)
        if c is not None and c > self.max_lifetime:
            raise ValueError(f"{name}.lifetime = {c} is invalid: it must be <= max_lifetime = {self.max_lifetime}.")


def _concrete_int(x):
    """max(x) as an int when x is concrete (not a tracer or a lowering placeholder), else None."""
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (np.ndarray, jax.Array)) and not isinstance(x, jax.core.Tracer):
        return int(np.max(np.asarray(x))) if np.size(x) else None
    return None


# -- the meta-network --------------------------------------------------------------------------
def input_size(temporal: bool) -> int:
    """Per-step inputs of the meta-network: 5 (r, done, π(a|s), φ(y_t), φ(y_{t+1})), 7 with
    TA-LPG's n/N and log N."""
    return 7 if temporal else 5


def init_params(key: jax.Array | None = None, temporal: bool = False, hidden: int = 256, y_bins: int = 8,
                phi_hidden: int = 16, scale: float = 1.0) -> dict:  # fmt: skip
    """Meta-network parameters (dict of arrays; about 204k for hidden 256 and TA inputs).
    With `key = None`, a fixed key (0)."""
    key = jax.random.key(0) if key is None else key
    D, H = input_size(temporal), hidden
    ks = jax.random.split(key, 5)

    def dense(k, n_in, n_out):
        return jax.random.normal(k, (n_in, n_out)) * scale / np.sqrt(n_in)

    return {
        "phi_w1": dense(ks[0], y_bins, phi_hidden), "phi_b1": jnp.zeros(phi_hidden),
        "phi_w2": dense(ks[1], phi_hidden, 1), "phi_b2": jnp.zeros(1),
        "gru_wi": dense(ks[2], D, 3 * H), "gru_wh": dense(ks[3], H, 3 * H), "gru_b": jnp.zeros(3 * H),
        "pi_w": jnp.zeros((H, 1)), "pi_b": jnp.zeros(1),
        "y_w": dense(ks[4], H, y_bins) * 0.1, "y_b": jnp.zeros(y_bins),
    }  # fmt: skip


def check_params(params: Any, cfg: RuleFields, where: str) -> None:
    """Raise unless `params` has the meta-network's keys and shapes for `cfg`."""
    D, H, Y, F = input_size(cfg.temporal), cfg.meta_hidden, cfg.y_bins, cfg.phi_hidden
    want = {"phi_w1": (Y, F), "phi_b1": (F,), "phi_w2": (F, 1), "phi_b2": (1,), "gru_wi": (D, 3 * H),
            "gru_wh": (H, 3 * H), "gru_b": (3 * H,), "pi_w": (H, 1), "pi_b": (1,), "y_w": (H, Y), "y_b": (Y,)}  # fmt: skip
    if not isinstance(params, dict) or set(params) != set(want):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{where}: expected keys {sorted(want)}, got {got}; build it with lpg.init_params.")
    for k, shape in want.items():
        s = tuple(np.shape(params[k]))
        if s[-len(shape):] != shape:
            raise ValueError(
                f"{where}[{k!r}] has shape {s}, expected [..., {', '.join(map(str, shape))}] "
                f"(temporal={cfg.temporal}, meta_hidden={H}, y_bins={Y}, phi_hidden={F})."
            )


def without_time_inputs(params: dict) -> dict:
    """A TA-LPG network as the LPG network it is when `time_inputs = 0`: the GRU input rows
    that read n/N and log N (then multiplying zeros) are dropped. [7, 3H] -> [5, 3H]."""
    d = np.shape(params["gru_wi"])[-2]
    if d != input_size(True):
        raise ValueError(f"without_time_inputs: gru_wi reads {d} inputs; a TA-LPG network reads {input_size(True)}.")
    return {**params, "gru_wi": params["gru_wi"][..., : input_size(False), :]}


def phi(params: dict, y: jax.Array) -> jax.Array:
    """φ(y): [..., Y] -> [...]."""
    h = jax.nn.relu(y @ params["phi_w1"] + params["phi_b1"])
    return (h @ params["phi_w2"] + params["phi_b2"])[..., 0]


def meta_outputs(params: dict, inputs: jax.Array, done: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Backward GRU over `inputs` [T, B, D], hidden reset where `done` [T, B].
    Returns (π̂ [T, B], ŷ [T, B, Y])."""
    H = params["gru_wh"].shape[0]

    def cell(h, xs):
        x, d = xs
        h = jnp.where(d[:, None], 0.0, h)  # a step that ended an episode starts a fresh backward pass
        gi = x @ params["gru_wi"] + params["gru_b"]
        gh = h @ params["gru_wh"]
        r = jax.nn.sigmoid(gi[:, :H] + gh[:, :H])
        z = jax.nn.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        n = jnp.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        h = (1 - z) * n + z * h
        return h, h

    _, hs = jax.lax.scan(cell, jnp.zeros(inputs.shape[1:2] + (H,)), (inputs, done), reverse=True)
    pi_hat = (hs @ params["pi_w"] + params["pi_b"])[..., 0]
    y_hat = jax.nn.softmax(hs @ params["y_w"] + params["y_b"], -1)
    return pi_hat, y_hat


# -- the agent --------------------------------------------------------------------------------
class AgentState(NamedTuple):
    """A tabular agent in training: params, `[B]` env states and observations `[B, obs_dim]`."""

    params: dict  # {"pi": [(w, b)...], "y": [(w, b)...]} (A2C: "y" is the critic, 1 output)
    env_state: Any  # [B]
    obs: jax.Array  # [B, obs_dim]
    key: jax.Array
    num_updates: jax.Array  # int32 []: agent updates made so far


def _mlp_init(key, sizes):
    ks = jax.random.split(key, len(sizes) - 1)
    return [(jax.random.normal(k, (a, b)) / np.sqrt(a) * (0.0 if i == len(sizes) - 2 else 1.0), jnp.zeros(b))
            for i, (k, a, b) in enumerate(zip(ks, sizes[:-1], sizes[1:]))]  # fmt: skip


def _mlp(layers, x):
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = jax.nn.relu(x)
    return x


def init_agent(key: jax.Array, env: mg.MetaGrid, cfg: LPGConfig, level: mg.Level) -> AgentState:
    """A fresh agent (zero output layers: uniform policy, uniform y) and its envs."""
    k_pi, k_y, k_env, k_run = jax.random.split(key, 4)
    obs_dim = env.observation_space(level).shape[0]
    out_y = cfg.y_bins if cfg.update_rule == "lpg" else 1
    params = {"pi": _mlp_init(k_pi, (obs_dim, *cfg.hidden, 5)), "y": _mlp_init(k_y, (obs_dim, *cfg.hidden, out_y))}
    obs, env_state = jax.vmap(env.reset, (0, None))(jax.random.split(k_env, cfg.num_envs), level)
    return AgentState(params, env_state, obs, k_run, jnp.int32(0))


class Rollout(NamedTuple):
    """One rollout, time-major: every field is `[T, B]` or `[T, B, obs_dim]`."""

    obs: jax.Array  # [T, B, obs_dim]
    action: jax.Array  # [T, B]
    reward: jax.Array  # [T, B]
    terminated: jax.Array  # [T, B]
    done: jax.Array  # [T, B]
    next_obs: jax.Array  # [T, B, obs_dim]: the true next observation (final one at episode ends)


def rollout(state: AgentState, env: mg.MetaGrid, cfg: LPGConfig, level: mg.Level) -> tuple[AgentState, Rollout]:
    """`cfg.num_steps` steps of the agent's envs on `level`: the new state and `[T, B]` leaves."""

    def policy(obs, key):
        return jax.random.categorical(key, _mlp(state.params["pi"], obs))

    def keep(step: rollout_lib.Step) -> Rollout:
        done = step.terminated | step.truncated
        return Rollout(step.obs, step.action, step.reward, step.terminated, done, step.final_obs)

    carry = (state.env_state, state.obs, state.key)
    (env_state, obs, key), traj = rollout_lib.collect(env, level, carry, policy, cfg.num_steps, keep)
    return state._replace(env_state=env_state, obs=obs, key=key), traj


def grid_forward(params: dict, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The grid agent's two MLPs: (policy logits [..., A], y logits [..., Y] or value [..., 1])."""
    return _mlp(params["pi"], obs), _mlp(params["y"], obs)


def lpg_loss(params, traj: Rollout, cfg: LPGConfig, progress, lifetime, forward=grid_forward) -> tuple[jax.Array, dict]:
    """The agent's loss under the learned rule; the meta-network's outputs are constants.
    `forward(params, obs) -> (policy logits, y logits)` is the agent's network (any agent
    whose config has the meta-network fields of LPGConfig: lpg_params, temporal,
    time_inputs, kl_coef). `traj` is `[T, B]`; returns `(loss, metrics)`, loss a scalar."""
    logits, y_logits = forward(params, traj.obs)
    logp = jax.nn.log_softmax(logits)
    logp_a = jnp.take_along_axis(logp, traj.action[..., None], -1)[..., 0]
    y = jax.nn.softmax(y_logits)
    y_next = jax.nn.softmax(forward(params, traj.next_obs)[1])
    meta = cfg.lpg_params
    done = traj.done.astype(jnp.float32)
    feats = [traj.reward, done, jnp.exp(logp_a), phi(meta, y), (1 - done) * phi(meta, y_next)]
    if cfg.temporal:
        ta = cfg.time_inputs * jnp.stack([progress, jnp.log(lifetime) / LOG_N_SCALE])
        feats += [jnp.full_like(done, ta[0]), jnp.full_like(done, ta[1])]
    inputs = jax.lax.stop_gradient(jnp.stack(feats, -1))
    pi_hat, y_hat = jax.lax.stop_gradient(meta_outputs(meta, inputs, traj.done))
    kl = jnp.sum(y * (jnp.log(y + 1e-8) - jnp.log(y_hat + 1e-8)), -1)
    pg = -jnp.mean(pi_hat * logp_a)
    return pg + cfg.kl_coef * jnp.mean(kl), {"policy_loss": pg, "kl_loss": jnp.mean(kl)}


def a2c_loss(params, traj: Rollout, cfg: LPGConfig, progress, lifetime, forward=grid_forward) -> tuple[jax.Array, dict]:
    """A2C with truncation-aware GAE (bootstrapping from the true next observation) and an
    entropy bonus; `forward(params, obs) -> (policy logits, value [..., 1])`."""
    logits, v = forward(params, traj.obs)
    logp = jax.nn.log_softmax(logits)
    logp_a = jnp.take_along_axis(logp, traj.action[..., None], -1)[..., 0]
    v = v[..., 0]
    v_next = jax.lax.stop_gradient(forward(params, traj.next_obs)[1][..., 0])
    adv, ret = gae(traj.reward, jax.lax.stop_gradient(v), v_next, traj.terminated, traj.done, cfg.gamma, cfg.lam)
    entropy = -jnp.sum(jnp.exp(logp) * logp, -1).mean()
    pg = -jnp.mean(jax.lax.stop_gradient(adv) * logp_a)
    vloss = 0.5 * jnp.mean((v - ret) ** 2)
    return pg - cfg.ent_coef * entropy + vloss, {"policy_loss": pg, "value_loss": vloss}


def update(state: AgentState, env: mg.MetaGrid, cfg: LPGConfig, level: mg.Level, lifetime) -> tuple[AgentState, dict]:
    """One agent update: a rollout, then one SGD step (lr_pi on the policy, lr_y on y)."""
    state, traj = rollout(state, env, cfg, level)
    progress = state.num_updates / lifetime
    loss = lpg_loss if cfg.update_rule == "lpg" else a2c_loss
    grads, info = jax.grad(loss, has_aux=True)(state.params, traj, cfg, progress, lifetime)
    lrs = {"pi": cfg.lr_pi, "y": cfg.lr_y}
    params = {k: jax.tree.map(lambda p, g, k=k: p - lrs[k] * g, state.params[k], grads[k]) for k in state.params}
    info["reward_per_step"] = jnp.mean(traj.reward)
    return state._replace(params=params, num_updates=state.num_updates + 1), info


def lifetime_of(cfg: LPGConfig, level: mg.Level) -> jax.Array:
    """The number of agent updates of an inner run (int32 scalar): `cfg.lifetime` when > 0, else
    the level's own."""
    return jnp.where(cfg.lifetime > 0, cfg.lifetime, level.lifetime).astype(jnp.int32)


def policy_probs(params: dict, env: mg.MetaGrid, level: mg.Level) -> jax.Array:
    """[S, A]: the agent's policy in every tabular state of the level."""
    return jax.nn.softmax(_mlp(params["pi"], env.all_obs(level)))


def make_train(env: mg.MetaGrid, cfg: LPGConfig):
    """`train(key, cfg, level) -> (state, metrics)`; see the module docstring.

    metrics (per run; averaged over a batch of levels): episode_return [1] (final return /
    optimum, or the raw return where the optimum is <= 0), return [1], optimal_return [1],
    num_updates [1] (the lifetime actually run), policy_loss [1] (mean over the lifetime;
    NaN marks a diverged run).
    """

    def one(key, cfg, level):
        N = lifetime_of(cfg, level)
        state = init_agent(key, env, cfg, level)

        def body(_, carry):
            state, loss_sum = carry
            state, info = update(state, env, cfg, level, N)
            return state, loss_sum + info["policy_loss"]

        state, loss_sum = jax.lax.fori_loop(0, jnp.minimum(N, cfg.max_lifetime), body, (state, jnp.float32(0.0)))
        ret = policy_return(env, level, policy_probs(state.params, env, level))
        opt = mg.optimal_return(env, level)
        # A lifetime beyond max_lifetime would be cut short: fail the run instead.
        ok = N <= cfg.max_lifetime
        score = jnp.where(ok, normalised(ret, opt), jnp.nan)
        metrics = {"episode_return": score, "return": ret, "optimal_return": opt,
                   "num_updates": state.num_updates, "policy_loss": jnp.where(ok, loss_sum / N, jnp.nan)}  # fmt: skip
        return state, jax.tree.map(lambda x: jnp.atleast_1d(x), metrics)

    def train(key, cfg, level):
        if level.size.ndim == 0:
            return one(key, cfg, level)
        c = _concrete_int(level.lifetime)
        if c is not None and c > cfg.max_lifetime and not _concrete_int(cfg.lifetime):
            raise ValueError(f"a level's lifetime {c} exceeds LPGConfig.max_lifetime = {cfg.max_lifetime}.")
        if level.size.shape[0] == 1:  # one level: the same numbers, a smaller program (no batched loop)
            state, metrics = one(jax.random.split(key, 1)[0], cfg, jax.tree.map(lambda x: x[0], level))
            return jax.tree.map(lambda x: x[None], state), {k: v.astype(jnp.float32) for k, v in metrics.items()}
        keys = jax.random.split(key, level.size.shape[0])
        state, metrics = jax.vmap(one, (0, None, 0))(keys, cfg, level)
        m = {k: jnp.mean(v.astype(jnp.float32), 0) for k, v in metrics.items()}
        return state, m

    return train


def normalised(ret: jax.Array, opt: jax.Array) -> jax.Array:
    """ret / opt where the optimum is positive, else ret (a level with nothing to gain);
    elementwise, any shape."""
    pos = opt > 1e-6
    return jnp.where(pos, ret / jnp.where(pos, opt, 1.0), ret)


def policy_return(env, level, probs):
    """Exact expected return of the stationary policy `probs` `[S, A]` on `level` (scalar)."""
    return mg.policy_return(env, level, probs)


def make_task_train(env: mg.MetaGrid, cfg: LPGConfig, dist: mg.GridDistribution, num_levels: int):
    """`train(key, cfg, env_params)` that draws `num_levels` fresh levels from `dist` with
    its key and trains one agent on each (env_params is ignored). With the ES trainer's
    common seeds, every candidate of a generation (both halves of each ± pair) meets the
    same levels, and each generation meets new ones."""
    if dist.lifetime[1] > cfg.max_lifetime and not _concrete_int(cfg.lifetime):
        raise ValueError(
            f"GridDistribution.lifetime = {dist.lifetime} reaches past LPGConfig.max_lifetime = {cfg.max_lifetime}."
        )
    if (dist.max_size, dist.max_objects) != (env.max_size, env.max_objects):
        raise ValueError(f"GridDistribution max_size/max_objects = {(dist.max_size, dist.max_objects)} differ from "
                         f"the env's {(env.max_size, env.max_objects)}.")  # fmt: skip
    train = make_train(env, cfg)

    def task_train(key, cfg, env_params=None):
        k_levels, k_run = jax.random.split(key)
        return train(k_run, cfg, mg.sample_levels(k_levels, dist, num_levels))

    return task_train


def make_evaluate(env: mg.MetaGrid, cfg: LPGConfig):
    """`evaluate(key, cfg, levels [L], lifetime=0) -> [L]`: the normalised final return of a
    fresh agent trained by `cfg`'s rule on each level (for `lifetime` updates when > 0,
    else each level's own). Compiled once per static config."""
    train = make_train(env, cfg)
    run = jax.jit(jax.vmap(lambda k, c, l: train(k, c, l)[1]["episode_return"][0], (0, None, 0)))

    def evaluate(key, cfg, levels, lifetime=0):
        keys = jax.random.split(key, levels.size.shape[0])
        return np.asarray(run(keys, cfg.replace(lifetime=jnp.int32(lifetime)), levels))

    return evaluate
