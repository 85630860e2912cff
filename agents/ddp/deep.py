"""DηN: a DQN-style distributional agent that optimises a stock-augmented objective
`E f(c_0 + G)` (Pires et al. 2025, §6).

The env is wrapped with a stock (`envs/stock.py`): `c_{t+1} = (c_t + r_{t+1}) / gamma`,
with c_0 drawn per episode from `[c0_low, c0_high]` during training. The network is

    torso MLP(obs) -> h;  MLP([h, norm(c), hats(c), time_to_go / H, one_hot(time_to_go)]) -> [A, M]

with `norm(c)` the stock mapped from `[stock_low, stock_high]` to `[-1, 1]` and clipped,
the optional lattice features `hats(c)` and `one_hot(time_to_go)` (below), and a
categorical (C51: logits over a fixed support) or quantile (QR: M quantiles) head.

Acting and bootstrapping use the stock-augmented greedy rule (note the shift by c):

    a* = argmax_a E_{Z ~ eta(s, c, a)} f(c + Z)

at `(s, c)` when acting and at `(s', (c + r)/gamma)` in the target, which is then
`Π law(r + gamma Z̄(s', c', a*))` (C51) or the samples `r + gamma θ̄(s', c', a*)` (QR).
The targets and losses are DQN's pieces (`dqn.categorical_targets` / `quantile_targets`
and `categorical_loss` / `quantile_loss`, fed `E f(c' + Z̄(s', c', ·))` as the action
selector), and the replay, ε schedule, optimiser, target updates and the update itself
(`dqn.collect_and_learn`) are `agents/dqn.py`'s. Because the stock evolves
deterministically given the reward, a stored transition holds for every stock: each
sampled transition gets, with probability `relabel_prob`, a fresh stock
`c ~ U[stock_low, stock_high]` and next stock `(c + r)/gamma` (hindsight relabelling).

With `horizon = H > 0` the env is a finite-horizon task: time-to-go enters the network
and reaching H ends the return (no bootstrap), as in the finite-horizon DP. With
`horizon = 0` there is no time input and time limits are truncations that bootstrap.

Relabelled stocks are uniform on `[stock_low, stock_high]`, or on the lattice of
multiples of `stock_spacing`. With integer rewards, gamma = 1 and integer c_0 every
stock an episode meets is an integer, and the greedy action typically switches exactly
at integer stocks (e.g. at c = -1 the returns 0 and 2 tie for f = -|x|); training on the
lattice keeps the network from having to resolve the ties in between. A quantile head
is hurt by such ties either way: a 50/50 mixture of returns 0 and 2 leaves its middle
quantiles near 1 (the quantile loss is almost flat there, the Huber part pulls them to
the mean), so `E f(c + Z)` sees a return of 1 that no policy attains. The categorical
head mixes probabilities, not locations, and does not have this bias.

Three things decided how well the greedy policy matches the exact optimum (measured on
`risky_grid` against stock DVI, `experiments/ddp/cvar`):
- the support must cover the return-to-go from *every* state, not only from the start
  (`return_to_go_bounds`, used by `config_for_mdp`): a bootstrap target `r + gamma Z(s')`
  beyond `v_max` is clipped onto it, which underrates every route through those states
  (the `clipped` training metric reports the clipped target mass);
- the stock and time-to-go inputs. As normalised scalars, the network blurs the return
  distributions of neighbouring stocks and times, where the optimal policy switches
  (on a lattice, at every integer stock, and with the steps left to finish a detour).
  `stock_features = K` adds K hat features of the stock (one per lattice stock when
  centred on it) and `time_features` a one-hot of the time-to-go (`config_for_mdp(...,
  lattice_features=True)` sets both);
- `double_q`: with the target network selecting a*, rarely taken actions were overrated
  (by up to 1 in `E min(c + G, 0)`) and flipped close decisions.

The objective f is data (`objective_family`, `objective_params`: traced config fields,
see `agents/ddp/objectives.py`), so seeds and objectives vmap as one population.
Evaluation fixes c_0 (`evaluate`, e.g. `c_0 = -target`), or searches c_0 at the start
state for CVaR (`select_c0`, the Rockafellar–Uryasev outer max on the network's values).

The pieces are module-level functions that `make_agent` composes: `make_networks`,
`network_inputs` and `stock_scores` (joined in `values`), `epsilon_greedy` / `act`,
`collect` / `warmup`, `relabel`, `bootstrap_discount`, the `targets` and `loss` per head
(`TARGETS`, `LOSSES`: DQN's), `ddp_loss` joining them, and `update`. `targets` and
`loss` can be replaced by passing a function.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlx import distributional as dist
from rlx import replay
from rlx.agents import dqn
from rlx.agents.ddp import objectives as objectives_lib
from rlx.agents.ddp.objectives import FAMILIES, NUM_PARAMS, Objective
from rlx.config import _concrete, config, static, traced
from rlx.envs import stock as stock_lib
from rlx.envs.check import check_interface
from rlx.envs.core import Environment
from rlx.envs.wrappers import EpisodeStats, is_discrete
from rlx.evaluation import episode_limit, evaluate as evaluate_agent
from rlx.networks import ACTIVATIONS, MLP, _dense
from rlx.running_stats import RunningStats, init_stats, normalize, update_stats
from rlx.types import Agent

HEADS = ("c51", "qr")


@config
class DDPConfig(dqn.DQNConfig):
    """DηN settings. Defaults are for the 4x4 "generate a desired return" grid
    (`rlx/ddp-grid`: gamma = 1, H = 16, returns in [-16, 32], f = -|x|, c_0 = -target)."""

    head: str = static("c51", "return-distribution head: c51 (categorical) or qr (quantile)", choices=HEADS)
    horizon: int = static(16, "finite horizon H (the env's time limit): time-to-go/H enters the network and "
                          "reaching H ends the return; 0: no time input, time limits bootstrap", ge=0)
    num_envs: int = static(16, "parallel environments per member", ge=1)
    utd: float = static(0.25, "update-to-data ratio: gradient steps per env step (transition)", gt=0)
    total_steps: int = static(200_000, "env steps per member in a full run, warm-up included", ge=1)
    learning_starts: int = static(4_096, "warm-up env steps per member with uniform random actions", ge=0)
    buffer_size: int = static(50_000, "replay capacity (transitions per member)", ge=1)
    target_update_period: int = static(100, "gradient steps between target-network updates", ge=1)
    hidden: tuple = static((128, 128), "torso hidden layer widths (over the observation)", ge=1)
    head_hidden: tuple = static((128, 128), "hidden widths after the torso, over [torso features, stock, time-to-go]", ge=1)
    num_atoms: int = static(49, "c51: support size; qr: number of quantiles", ge=2)
    stock_features: int = static(0, "K >= 2: the network also gets K hat (linear-interpolation) features of the "
                                 "stock on an even grid over [stock_low, stock_high]; 0: the normalised scalar only",
                                 ge=0)
    time_features: bool = static(False, "with horizon H: the network also gets a one-hot of the time-to-go (H + 1 "
                                 "hat features over [0, H])")

    lr: float = traced(1e-3, "Adam learning rate (annealed to 0 with anneal_lr)", gt=0)
    gamma: float = traced(1.0, "discount, also in the stock update c' = (c + r)/gamma", gt=0, le=1)
    eps_fraction: float = traced(0.3, "fraction of total_steps over which ε decays", gt=0, le=1)
    v_min: float = traced(-16.0, "c51: lowest support atom (must cover the returns)")
    v_max: float = traced(32.0, "c51: highest support atom")
    reward_scale: float = traced(1.0, "must be 1: the stock accumulates the env's own rewards", ge=1, le=1)
    objective_family: int = traced(objectives_lib.NEG_ABS, "f, as an index into agents.ddp.objectives.FAMILIES "
                                   f"({', '.join(f'{i}={n}' for i, n in enumerate(FAMILIES))})",
                                   ge=0, le=len(FAMILIES) - 1)
    objective_params: tuple = traced((0.0,) * NUM_PARAMS, "f's parameters (piecewise_linear: kink, slope below, "
                                     "slope above; exp_utility: lam)")
    c0_low: float = traced(-32.0, "training: c_0 ~ U[c0_low, c0_high] per episode")
    c0_high: float = traced(16.0, "training: upper end of the c_0 range")
    stock_low: float = traced(-32.0, "safe stock range [-G_max, -G_min]: normalises the stock input "
                              "(clipped) and is the range of relabelled stocks")
    stock_high: float = traced(16.0, "upper end of the safe stock range")
    relabel_prob: float = traced(1.0, "probability that a replayed transition gets a fresh stock", ge=0, le=1)
    stock_spacing: float = traced(0.0, "relabelled stocks are rounded to multiples of this (0: continuous); "
                                  "see the module docstring for when a lattice helps", ge=0)

    def check(self) -> None:
        super().check()
        name = type(self).__name__
        for lo, hi, strict in (("c0_low", "c0_high", False), ("stock_low", "stock_high", True)):
            a, b = _concrete(getattr(self, lo)), _concrete(getattr(self, hi))
            if a is not None and b is not None and np.any(a > b if not strict else a >= b):
                rel = "<" if strict else "<="
                raise ValueError(f"{name}.{lo} = {getattr(self, lo)} is invalid: it must be {rel} {hi} = {getattr(self, hi)}.")
        if len(self.objective_params) != NUM_PARAMS:
            raise ValueError(f"{name}.objective_params = {self.objective_params} is invalid: it needs {NUM_PARAMS} entries.")
        g = _concrete(self.gamma)
        if self.horizon == 0 and g is not None and np.any(g == 1.0):
            raise ValueError(f"{name}.horizon = 0 is invalid with gamma = 1: returns need a finite horizon; "
                             "set horizon to the env's time limit, or gamma < 1.")
        if self.stock_features == 1:
            raise ValueError(f"{name}.stock_features = 1 is invalid: use 0 (the scalar stock only) or K >= 2 hat "
                             "features (K = (stock_high - stock_low)/spacing + 1 puts one on each lattice stock).")
        if self.time_features and not self.horizon:
            raise ValueError(f"{name}.time_features = True is invalid with horizon = 0: there is no time-to-go input.")
        fam = _concrete(self.objective_family)
        if fam is not None and g is not None and np.all(fam == np.round(fam)):
            objectives_lib.check_gamma(self.objective(), g)

    def objective(self, c0: Any = 0.0) -> Objective:
        """f as an `Objective` pytree (c_0 given, default 0); works on traced fields."""
        dtype = jnp.result_type(float)
        return Objective(
            family=jnp.asarray(self.objective_family, jnp.int32),
            params=jnp.stack([jnp.asarray(p, dtype) for p in self.objective_params], -1),
            c0=jnp.asarray(c0, dtype),
            optimise_c0=jnp.asarray(False),
            tau=jnp.asarray(1.0, dtype),
        )


def config_for_mdp(mdp, horizon: int, objective: Objective | None = None, gamma: float = 1.0, head: str = "c51",
                   atom_spacing: float = 1.0, c0_range: tuple | None = None, lattice_features: bool = False,
                   **overrides) -> DDPConfig:
    """A `DDPConfig` sized from a finite MDP (host-side): the support covers the bounds
    `[G_min, G_max]` on the return-to-go from every state (`return_to_go_bounds`; c51
    atoms `atom_spacing` apart), the stock input and relabelled stocks span the safe
    range `[-G_max, -G_min]` (for a hinge-type f, stocks outside it change nothing), c_0 is trained on `c0_range`
    (default: the safe range), f comes from `objective` (default: -|x|). `overrides`
    win over all of these; a support narrower than the returns-to-go clips the
    bootstrap targets (watch the `clipped` training metric). `lattice_features=True`
    adds one hat feature per lattice stock of the safe range (spacing `stock_spacing`,
    default 1) and a one-hot of the time-to-go to the network input."""
    g_min, g_max = return_to_go_bounds(mdp, horizon, gamma)
    if head == "c51":
        g_min, g_max = np.floor(g_min / atom_spacing) * atom_spacing, np.ceil(g_max / atom_spacing) * atom_spacing
    g_min, g_max = float(g_min), float(g_max)
    s_lo, s_hi = -g_max, -g_min
    c0_lo, c0_hi = (s_lo, s_hi) if c0_range is None else c0_range
    kw = dict(head=head, horizon=horizon, gamma=gamma, v_min=g_min, v_max=g_max,
              stock_low=s_lo, stock_high=s_hi, c0_low=c0_lo, c0_high=c0_hi)
    if head == "c51":
        kw["num_atoms"] = int(round((g_max - g_min) / atom_spacing)) + 1
    else:
        kw["num_atoms"] = 32
    kw.update(objective_fields(objectives_lib.target(0.0) if objective is None else objective))
    if lattice_features:
        spacing = overrides.get("stock_spacing") or 1.0
        lo, hi = overrides.get("stock_low", s_lo), overrides.get("stock_high", s_hi)
        kw.update(stock_features=int(round((hi - lo) / spacing)) + 1, time_features=horizon > 0)
    kw.update(overrides)
    return DDPConfig(**kw)


def return_to_go_bounds(mdp, horizon: int | None, gamma: float = 1.0) -> tuple[float, float]:
    """`(G_min, G_max)`: the lowest and highest return-to-go any policy can get from any
    state with at most `horizon` steps left (0 included: episodes can end), by a
    min/max backup over the outcomes of positive probability (host-side, numpy).

    This is what a return support must cover: the return from the start state is not
    enough, since a bootstrap target `r + gamma Z(s')` is a return-to-go from a later
    state (on `risky_grid`, H = 10, returns from the start lie in [-13, 7] but a cell
    next to the goal has return-to-go 10). `horizon=None` (discounted, gamma < 1): the
    crude bounds `R_min/(1-gamma), R_max/(1-gamma)` of `tabular.return_bounds`."""
    from rlx.agents.ddp import tabular
    from rlx.envs.tabular.mdp import outcomes

    if not horizon:
        return tabular.return_bounds(mdp, gamma, None)
    succ, probs, rewards = (np.asarray(x) for x in outcomes(mdp))
    terminal = np.asarray(mdp.terminal)
    possible = probs > 0
    lo, hi = np.zeros(terminal.shape), np.zeros(terminal.shape)
    g_min = g_max = 0.0
    for _ in range(horizon):
        # A terminal successor ends the return: its continuation is 0.
        cont_lo, cont_hi = (np.where(terminal[succ], 0.0, v[succ]) for v in (lo, hi))
        lo = np.where(possible, rewards + gamma * cont_lo, np.inf).min((1, 2))
        hi = np.where(possible, rewards + gamma * cont_hi, -np.inf).max((1, 2))
        g_min, g_max = min(g_min, lo[~terminal].min()), max(g_max, hi[~terminal].max())
    return float(g_min), float(g_max)


def objective_fields(objective: Objective) -> dict:
    """`DDPConfig` fields for an (unbatched, host-side) `Objective`: its f. CVaR
    objectives train f = min(x, 0); their c_0 is searched at evaluation (`select_c0`)."""
    return dict(objective_family=int(objective.family),
                objective_params=tuple(float(p) for p in np.asarray(objective.params)))


class StockDistributionalNetwork(nn.Module):
    """`(obs, stock, time_to_go)` -> `[..., A, M]` (C51 logits or QR quantiles). The
    stock (normalised) and time-to-go (over H) join the torso's features."""

    num_actions: int
    num_atoms: int
    hidden: Sequence[int] = (128, 128)
    head_hidden: Sequence[int] = (128, 128)
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array, extras: jax.Array, batch_dims: int = 0) -> jax.Array:
        """obs: `[*batch, *obs_shape]`; extras: `[*batch, E]` (normalised stock[, time-to-go])."""
        h = MLP(self.hidden, self.activation)(obs, batch_dims)
        x = MLP(self.head_hidden, self.activation)(jnp.concatenate([h, extras], -1), batch_dims)
        out = _dense(self.num_actions * self.num_atoms, 1.0)(x)
        return out.reshape(out.shape[:-1] + (self.num_actions, self.num_atoms))


@struct.dataclass
class DDPParams:
    """DηN's parameters: the online and target networks and the inner observation's statistics."""

    online: Any
    target: Any
    obs_stats: RunningStats  # of the inner observation obs["obs"]


def stock_env(env: Any, cfg: DDPConfig) -> stock_lib.StockWrapper:
    """`env` with the stock (and time-to-go when `cfg.horizon > 0`) in its observation."""
    if isinstance(env, stock_lib.StockWrapper):
        raise ValueError("deep DDP: pass the inner env; the agent adds the stock itself (from cfg.gamma and the c_0 range).")
    if not isinstance(env, Environment):
        raise ValueError(
            f"deep DDP: {getattr(env, 'name', type(env).__name__)} is not an rlx `Environment` (reset_env/step_env), "
            "which envs/stock.py's StockWrapper needs; use an rlx env such as rlx.envs.tabular.to_env(mdp)."
        )
    return stock_lib.StockWrapper(env, time_to_go=cfg.horizon > 0)


def stock_env_params(c: DDPConfig, env_params: Any, c0: Any = None) -> stock_lib.StockParams:
    """StockParams from the config (traced-safe): gamma, and the training c_0 range, or a
    fixed `c0` (evaluation)."""
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    lo, hi = (c.c0_low, c.c0_high) if c0 is None else (c0, c0)
    return stock_lib.StockParams(env_params, f(c.gamma), f(lo), f(hi))


def example_transition(env: Any, cfg: DDPConfig, env_params: Any = None) -> replay.Transition:
    """Shapes and dtypes of one stored transition (dict observations)."""
    senv = stock_env(env, cfg)
    params = stock_env_params(cfg, env.default_params if env_params is None else env_params)
    obs = jax.eval_shape(lambda k: senv.reset(k, params)[0], jax.random.key(0))
    s = jax.ShapeDtypeStruct
    return replay.Transition(obs, s((), jnp.int32), s((), jnp.float32), obs, s((), jnp.bool_), s((), jnp.bool_))


def buffer_bytes(env: Any, cfg: DDPConfig) -> int:
    """Replay memory of one member (a population of P needs P times this)."""
    return replay.nbytes(example_transition(env, cfg), cfg.buffer_size)


def hat_features(x: jax.Array, low, high, k: int) -> jax.Array:
    """`x: [...]` -> `[..., k]`: hat (tent) functions centred on `k` evenly spaced points
    over `[low, high]`, width one spacing; x is clipped to the range. At a grid point it
    is that point's one-hot; in between, the two neighbours share linearly."""
    u = (jnp.clip(x, low, high) - low) / (high - low) * (k - 1)
    return jnp.maximum(0.0, 1.0 - jnp.abs(u[..., None] - jnp.arange(k, dtype=u.dtype)))


def num_extras(cfg: Any) -> int:
    """Width of the stock and time-to-go input that joins the torso features (`cfg`: a
    `DDPConfig` or `DDPNetworks`)."""
    n = 1 + cfg.stock_features
    if cfg.horizon:
        n += 1 + (cfg.horizon + 1 if cfg.time_features else 0)
    return n


# -- the network and its greedy scores ---------------------------------------------------------
class DDPNetworks(NamedTuple):
    """The network and the static facts about its inputs and head that every piece needs."""

    network: Any  # StockDistributionalNetwork: (obs [N, *obs], extras [N, E]) -> [N, A, M]
    head: str  # c51 | qr
    num_actions: int  # A
    num_atoms: int  # M (c51 atoms, qr quantiles)
    transition: replay.Transition  # shapes and dtypes of one stored transition (dict observations)
    horizon: int  # H; 0: no time-to-go input
    stock_features: int  # K hat features of the stock; 0: the normalised scalar only
    time_features: bool  # a one-hot of the time-to-go
    normalize_obs: bool


def make_networks(env: Any, cfg: DDPConfig) -> DDPNetworks:
    """The network for `env` (an rlx `Environment` with discrete actions, without the
    stock); one line naming the problem otherwise."""
    act_space = env.action_space(env.default_params)
    if not is_discrete(act_space):
        raise ValueError(f"{type(cfg).__name__} needs discrete actions, but {getattr(env, 'name', env)} has a Box "
                         f"of shape {act_space.shape}.")
    network = StockDistributionalNetwork(act_space.n, cfg.num_atoms, cfg.hidden, cfg.head_hidden, cfg.activation)
    return DDPNetworks(network, cfg.head, act_space.n, cfg.num_atoms, example_transition(env, cfg), cfg.horizon,
                       cfg.stock_features, cfg.time_features, cfg.normalize_obs)  # fmt: skip


def network_inputs(nets: DDPNetworks, obs_stats: RunningStats, obs: dict, c: DDPConfig) -> tuple:
    """A stock-augmented observation (dict of `[..., ...]`) -> `(inner obs [..., *obs],
    extras [..., E])`: the inner observation (normalised with `normalize_obs`) and
    `[norm(stock), hats(stock), time_to_go / H, one_hot(time_to_go)]`, as configured."""
    inner = normalize(obs_stats, obs["obs"]) if nets.normalize_obs else obs["obs"]
    extras = [stock_lib.normalise_stock(obs["stock"], c.stock_low, c.stock_high)[..., None]]
    if nets.stock_features:
        extras.append(hat_features(obs["stock"], c.stock_low, c.stock_high, nets.stock_features))
    if nets.horizon:
        ttg = obs["time_to_go"].astype(jnp.float32)
        extras.append(ttg[..., None] / nets.horizon)
        if nets.time_features:
            extras.append(hat_features(ttg, 0.0, float(nets.horizon), nets.horizon + 1))
    return inner, jnp.concatenate(extras, -1)


def stock_scores(nets: DDPNetworks, out: jax.Array, stock: jax.Array, c: DDPConfig) -> jax.Array:
    """The greedy scores `E f(stock + Z(s, stock, a))`, `[..., A]`, of the network output
    `out [..., A, M]` (c51 logits on the support, or qr quantiles) at `stock [...]`."""
    f = c.objective()
    stock = stock[..., None, None]
    if nets.head == "c51":
        z = dist.categorical_support(c.v_min, c.v_max, nets.num_atoms)
        return jnp.sum(jax.nn.softmax(out, -1) * objectives_lib.utility(f, stock + z), -1)
    return jnp.mean(objectives_lib.utility(f, stock + out), -1)


def values(nets: DDPNetworks, online: Any, obs_stats: RunningStats, obs: dict, c: DDPConfig,
           batch_dims: int = 1) -> tuple[jax.Array, jax.Array]:  # fmt: skip
    """Network output `[..., A, M]` and the greedy scores `[..., A]` at the obs' stock."""
    inner, extras = network_inputs(nets, obs_stats, obs, c)
    out = nets.network.apply(online, inner, extras, batch_dims)
    return out, stock_scores(nets, out, obs["stock"], c)


def init_params(nets: DDPNetworks, key: jax.Array) -> DDPParams:
    """Freshly initialised params: online = target network, empty observation statistics."""
    obs_shape = nets.transition.obs["obs"].shape
    online = nets.network.init(key, jnp.zeros((1,) + obs_shape, jnp.float32), jnp.zeros((1, num_extras(nets))), 1)
    return DDPParams(online, online, init_stats(obs_shape))


def make_params(env: Any, cfg: DDPConfig, key: jax.Array) -> DDPParams:
    """Freshly initialised agent params (online = target network) without an env run."""
    return init_params(make_networks(env, cfg), key)


def make_value_fn(env: Any, cfg: DDPConfig) -> Callable:
    """`values(params: DDPParams, obs, c) -> E f(stock + Z(s, stock, a))` `[B, A]` for a
    batch of stock-augmented observations (dicts of `[B, ...]`)."""
    nets = make_networks(env, cfg)
    return lambda params, obs, c: values(nets, params.online, params.obs_stats, obs, c)[1]


# -- acting and collecting ---------------------------------------------------------------------
def epsilon_greedy(nets: DDPNetworks, params: DDPParams, obs: dict, key: jax.Array, eps: jax.Array,
                   c: DDPConfig) -> jax.Array:  # fmt: skip
    """Batched stock-augmented `obs` (dict of `[B, ...]`) -> actions `[B]` int32: uniformly
    random with probability `eps`, else `argmax_a E f(c + Z(s, c, a))`."""
    return dqn.epsilon_greedy_actions(values(nets, params.online, params.obs_stats, obs, c)[1], key, eps)


def act(nets: DDPNetworks, params: DDPParams, obs: dict, key: jax.Array, c: DDPConfig,
        deterministic: bool = True) -> jax.Array:  # fmt: skip
    """One unbatched stock-augmented observation (dict) -> `argmax_a E f(c + Z)`, or
    ε-greedy with ε = eps_end: one action, an integer scalar."""
    batched = jax.tree.map(lambda x: x[None], obs)
    scores = values(nets, params.online, params.obs_stats, batched, c)[1][0]
    return dqn.epsilon_greedy_action(scores, key, c.eps_end, deterministic)


def collect(nets: DDPNetworks, params: DDPParams, senv: Any, sparams: Any, carry: tuple, eps: jax.Array,
            c: DDPConfig, num_steps: int) -> tuple[tuple, replay.Transition]:  # fmt: skip
    """`num_steps` ε-greedy steps of the stock-wrapped env from `carry = (env_state, obs,
    key)`. Returns the new carry and a replay `Transition` with leaves `[T, B, ...]`."""
    policy = lambda obs, k: epsilon_greedy(nets, params, obs, k, eps, c)  # noqa: E731
    return replay.collect(senv, sparams, carry, policy, num_steps)


def warmup(nets: DDPNetworks, senv: Any, sparams: Any, carry: tuple, num_steps: int) -> tuple[tuple, replay.Transition]:
    """`collect` with uniformly random actions (the warm-up that fills the buffer)."""
    policy = lambda obs, k: jax.random.randint(k, obs["stock"].shape, 0, nets.num_actions, jnp.int32)  # noqa: E731
    return replay.collect(senv, sparams, carry, policy, num_steps)


def init_state(nets: DDPNetworks, senv: Any, cfg: DDPConfig, c: DDPConfig, env_params: Any, key: jax.Array) -> replay.AgentState:
    """The network (target = online), the optimiser, `num_envs` reset stock-wrapped envs
    (c_0 from the training range), and a buffer filled by the warm-up phase."""
    key, k_net, k_env, k_warm = jax.random.split(key, 4)
    sparams = stock_env_params(c, env_params)
    params = init_params(nets, k_net)
    opt_state = dqn.make_optimizer(cfg, c).init(params.online)
    fill = lambda carry, num_steps: warmup(nets, senv, sparams, carry, num_steps)  # noqa: E731
    env_state, obs, buffer, traj = replay.reset_and_fill(senv, sparams, (k_env, k_warm), nets.transition, fill, cfg)
    if traj is not None and cfg.normalize_obs:
        params = params.replace(obs_stats=update_stats(params.obs_stats, traj.obs["obs"]))
    return replay.start_state(params, opt_state, buffer, env_state, obs, key, cfg.learning_starts)


# -- relabelling, targets and the loss ---------------------------------------------------------
def relabel(mb: replay.Transition, key: jax.Array, c: DDPConfig) -> replay.Transition:
    """Give a `relabel_prob` fraction of the minibatch (leaves `[N, ...]`) fresh stocks in
    hindsight: `c ~ U[stock_low, stock_high]` (rounded to multiples of `stock_spacing`
    when it is > 0) and next stock `(c + r)/gamma`."""
    k_c, k_m = jax.random.split(key)
    stocks, _ = stock_lib.relabel_stocks(k_c, mb.reward, c.gamma, c.stock_low, c.stock_high)
    spacing = jnp.where(c.stock_spacing > 0, c.stock_spacing, 1.0)
    stocks = jnp.where(c.stock_spacing > 0, jnp.round(stocks / spacing) * spacing, stocks)
    next_stocks = stock_lib.next_stock(stocks, mb.reward, c.gamma)
    fresh = jax.random.uniform(k_m, mb.reward.shape) < c.relabel_prob
    obs = {**mb.obs, "stock": jnp.where(fresh, stocks, mb.obs["stock"])}
    next_obs = {**mb.next_obs, "stock": jnp.where(fresh, next_stocks, mb.next_obs["stock"])}
    return mb._replace(obs=obs, next_obs=next_obs)


def bootstrap_discount(mb: replay.Transition, c: DDPConfig, horizon: int) -> jax.Array:
    """`gamma·(1 - end)` `[N]`: with a horizon H > 0 the time limit ends the return (as in
    the finite-horizon DP), so truncated steps do not bootstrap; with H = 0 only
    termination ends it."""
    end = mb.terminated | mb.truncated if horizon else mb.terminated
    return c.gamma * (1.0 - end.astype(jnp.float32))


def clipped_mass(reward: jax.Array, discount: jax.Array, next_out: jax.Array, selector: jax.Array,
                 c: DDPConfig) -> jax.Array:  # fmt: skip
    """C51: the mean target mass `Z̄(s', c', a*)` puts outside `[v_min, v_max]` (clipped
    onto the edge atoms by the projection); it should be ~0, or the support misses some
    returns-to-go. reward, discount `[N]`; next_out logits `[N, A, M]`; selector `[N, A]`."""
    num_atoms = next_out.shape[-1]
    z = dist.categorical_support(c.v_min, c.v_max, num_atoms)
    a_star = jnp.argmax(selector, -1)
    p_next = jax.nn.softmax(jnp.take_along_axis(next_out, a_star[:, None, None], 1)[:, 0], -1)
    y = reward[:, None] + discount[:, None] * z
    tol = 1e-3 * (c.v_max - c.v_min) / (num_atoms - 1)
    outside = (y < c.v_min - tol) | (y > c.v_max + tol)
    return jnp.mean(jnp.sum(p_next * outside, -1))


# The default pieces by head: DQN's own, fed the stock-augmented action selector.
TARGETS = {"c51": dqn.categorical_targets, "qr": dqn.quantile_targets}
LOSSES = {"c51": dqn.categorical_loss, "qr": dqn.quantile_loss}


def ddp_loss(nets: DDPNetworks, cfg: DDPConfig, c: DDPConfig, params: DDPParams, online: Any, target_params: Any,
             mb: replay.Transition, key: jax.Array, targets: Callable,
             loss: Callable) -> tuple[jax.Array, dict]:  # fmt: skip
    """The distributional TD loss on one relabelled minibatch `mb` (leaves `[N, ...]`):
    `loss(out, action, targets(reward, discount, next_out, selector, c), c)` with
    `selector = E f(c' + Z(s', c', ·))` `[N, A]` of the target network (the online one
    with `double_q`). `params` gives the observation statistics; `online` is
    differentiated. Returns `(loss, {"value": mean E f(c + Z(s, c, a)), "clipped": ...})`."""
    mb = relabel(mb, key, c)
    out, scores = values(nets, online, params.obs_stats, mb.obs, c)
    next_out, selector = values(nets, target_params, params.obs_stats, mb.next_obs, c)
    if cfg.double_q:
        selector = values(nets, online, params.obs_stats, mb.next_obs, c)[1]
    selector, next_out = jax.lax.stop_gradient((selector, next_out))
    discount = bootstrap_discount(mb, c, nets.horizon)
    # A target is a constant of the regression, whatever `targets` computes it from.
    y = jax.lax.stop_gradient(targets(mb.reward, discount, next_out, selector, c))
    aux = dict(value=jnp.mean(jnp.take_along_axis(scores, mb.action[:, None], -1)))
    if nets.head == "c51":
        aux["clipped"] = clipped_mass(mb.reward, discount, next_out, selector, c)
    return loss(out, mb.action, y, c), aux


# -- the update and the agent ------------------------------------------------------------------
def update(nets: DDPNetworks, senv: Any, cfg: DDPConfig, c: DDPConfig, state: replay.AgentState, env_params: Any,
           targets: Callable, loss: Callable) -> tuple[replay.AgentState, dict]:  # fmt: skip
    """One update: `rollout_steps` ε-greedy steps per env, stored, then `dqn.learn_step`
    with `ddp_loss(targets, loss)` (through `dqn.collect_and_learn`). Returns `(state, metrics)`."""
    sparams = stock_env_params(c, env_params)
    eps = dqn.epsilon(c, state.env_steps, cfg.total_steps, cfg.eps_schedule)

    def collect_steps(carry):
        return collect(nets, state.params, senv, sparams, carry, eps, c, cfg.rollout_steps)

    def loss_for(params):
        return lambda online, target, mb, k: ddp_loss(nets, cfg, c, params, online, target, mb, k, targets, loss)

    return dqn.collect_and_learn(state, collect_steps, loss_for, eps, cfg, c, observed=lambda obs: obs["obs"])


def make_agent(env: Any, cfg: DDPConfig, targets: Callable | None = None, loss: Callable | None = None) -> Agent:
    """Build DηN for `env`, an rlx `Environment` with discrete actions (e.g.
    `rlx.envs.tabular.to_env(mdp)`), from the pieces above; the agent adds the stock.
    `train` takes the inner env's params; `act` takes one stock-augmented observation (a
    dict). Each keyword replaces one piece, as in `dqn.make_agent`:

    targets(reward [N], discount [N], next_out [N, A, M], selector [N, A], c) -> target:
        the bootstrap target (default by head: `dqn.categorical_targets` `[N, M]`
        probabilities, `dqn.quantile_targets` `[N, M]` samples); `selector` holds the
        greedy scores `E f(c' + Z(s', c', ·))`; gradients are stopped at its output.
    loss(out [N, A, M], action [N], target, c) -> scalar: the regression onto the target
        (default by head: `dqn.categorical_loss`, `dqn.quantile_loss`).
    """
    senv = EpisodeStats(stock_env(env, cfg))
    check_interface(env, where="ddp.deep.make_agent")  # the inner env's methods, spaces and observation
    if cfg.horizon:  # before the networks: building them runs jax (a compile on a first call)
        limit = getattr(env.default_params, "max_steps_in_episode", None)
        if limit is None or int(limit) != cfg.horizon:
            raise ValueError(f"{type(cfg).__name__}.horizon = {cfg.horizon} is invalid: it must equal the env's time "
                             f"limit max_steps_in_episode = {limit} (the time-to-go input counts down from it).")
    nets = make_networks(env, cfg)
    targets = TARGETS[cfg.head] if targets is None else targets
    loss = LOSSES[cfg.head] if loss is None else loss
    return replay.agent_from_pieces(nets, senv, cfg, init_state, update, act, targets, loss)


# --------------------------------------------------------------------------------------
# Evaluation: a given c_0, or the CVaR search over c_0
# --------------------------------------------------------------------------------------


def evaluate(agent: Agent, params: DDPParams, cfg: DDPConfig, env: Any, env_params: Any, key: jax.Array,
             c0: Any, num_episodes: int = 100, deterministic: bool = True) -> dict:
    """Greedy episodes started at stock `c0` (e.g. `-target`): `rlx.evaluation.evaluate`
    on the stock-wrapped env. Returns `return`, `discounted_return`, `length`, each `[N]`.
    Pure and vmappable over params/cfg/c0."""
    senv = stock_env(env, cfg)
    horizon = cfg.horizon or episode_limit(env, env_params)
    return evaluate_agent(agent, params, cfg, senv, stock_env_params(cfg, env_params, c0), key, num_episodes,
                          max_steps=horizon, gamma=1.0, deterministic=deterministic)


def start_values(value_fn: Callable, params: DDPParams, cfg: DDPConfig, env: Any, env_params: Any,
                 key: jax.Array, c0s: jax.Array, num_starts: int = 16) -> jax.Array:
    """The network's `V(c_0) = E_{s_0} max_a E f(c_0 + Z(s_0, c_0, a))` for every
    candidate `c0s: [K]`, averaged over `num_starts` sampled start states; `[K]`."""
    senv = stock_env(env, cfg)
    obs, _ = jax.vmap(senv.reset, (0, None))(jax.random.split(key, num_starts), stock_env_params(cfg, env_params))

    def at(c0):
        o = {**obs, "stock": jnp.full((num_starts,), c0, jnp.float32)}
        return jnp.mean(jnp.max(value_fn(params, o, cfg), -1))

    return jax.vmap(at)(c0s)


def select_c0(value_fn: Callable, params: DDPParams, cfg: DDPConfig, env: Any, env_params: Any, key: jax.Array,
              tau: float, c0s: jax.Array, num_starts: int = 16) -> tuple[jax.Array, jax.Array]:
    """CVaR_tau by the Rockafellar–Uryasev outer max on the network's values (the agent
    must be trained with f = min(x, 0), `objective_family = cvar`):
    `score(c_0) = -c_0 + V(c_0) / tau` over `c0s: [K]`. Returns `(best c_0, scores [K])`;
    the best c_0 is the agent's estimate of `-VaR_tau`."""
    v = start_values(value_fn, params, cfg, env, env_params, key, c0s, num_starts)
    scores = -c0s + v / tau
    return c0s[jnp.argmax(scores)], scores


def greedy_table(value_fn: Callable, params: DDPParams, cfg: DDPConfig, num_states: int, stocks: jax.Array,
                 horizon: int) -> jax.Array:
    """The network's greedy action at every (time t, state s, stock `stocks[j]`) of a
    tabular env (one-hot observations, `rlx.envs.tabular.to_env`): `[H, S, J]` int32,
    the policy `tabular.evaluate_policy` takes. With integer rewards, gamma = 1 and an
    integer c_0 the stocks an episode meets are integers, so on an integer stock grid
    this is exactly the policy the agent plays. Jittable and vmappable over params/cfg."""
    J = stocks.shape[0]
    t, s, j = np.meshgrid(np.arange(horizon), np.arange(num_states), np.arange(J), indexing="ij")
    obs = {"obs": jnp.eye(num_states, dtype=jnp.float32)[s.ravel()],
           "stock": jnp.asarray(stocks, jnp.float32)[j.ravel()],
           "time_to_go": jnp.asarray(horizon - t.ravel(), jnp.int32)}
    return jnp.argmax(value_fn(params, obs, cfg), -1).reshape(horizon, num_states, J).astype(jnp.int32)


def exact_return_law(mdp: Any, policy: jax.Array, grid: Any, c0: Any, horizon: int) -> jax.Array:
    """The exact law of the undiscounted return G `[M]` (on `grid.atoms`) of a
    stock-augmented `policy: [H, S, J]` started at stock `c0` from the MDP's start
    distribution: tabular policy evaluation, no sampling."""
    from rlx.agents.ddp import tabular

    nu = tabular.evaluate_policy(mdp, policy, grid, 1.0, horizon=horizon)
    return tabular.start_distribution(mdp, nu, grid, c0)
