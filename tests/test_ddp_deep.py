"""The deep stock-augmented agent (DηN, agents/ddp/deep.py): bad input, the greedy rule
`argmax_a E f(c + Z)` on hand-computed distributions, populations over seeds and
objectives, a fast learning check, and (slow) the issue's behaviour targets."""

from __future__ import annotations

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import distributional as dist
from rlx import envs
from rlx.agents import dqn
from rlx.agents.ddp import deep
from rlx.agents.ddp import objectives as O
from rlx.agents.ddp import tabular as T
from rlx.config import stack
from rlx.envs import stock as stock_lib
from rlx.envs.tabular import achievable_returns, ddp_grid, make_mdp, risky_grid, to_env
from rlx.evaluation import evaluate
from rlx.testing import raises_before_compile
from rlx.train import make_train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CVAR_STEPS = 200_000  # env steps per seed in the slow CVaR test (experiments/ddp/cvar, --scale cpu)


def bandit():
    """One decision, then the episode ends: a0 pays 1, a1 pays 3, a2 pays 0 or 4 (1/2 each)."""
    P = np.zeros((2, 3, 2))
    P[:, :, 1] = 1.0
    values = np.zeros((2, 3, 2))
    values[0] = [[1, 1], [3, 3], [0, 4]]
    return make_mdp(P, reward_values=values, reward_probs=np.full((2, 3, 2), 0.5), terminal=[False, True])


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(head="q"), "head"),
        (dict(c0_low=3.0, c0_high=1.0), "c0_low"),
        (dict(stock_low=2.0, stock_high=2.0), "stock_low"),
        (dict(reward_scale=2.0), "reward_scale"),
        (dict(objective_family=9), "objective_family"),
        (dict(objective_params=(1.0, 2.0)), "objective_params"),
        (dict(horizon=0), "horizon"),  # gamma = 1 needs a finite horizon
        (dict(v_min=5.0, v_max=1.0), "v_min"),
        (dict(relabel_prob=1.5), "relabel_prob"),
        (dict(stock_spacing=-1.0), "stock_spacing"),
        (dict(utd=0.3), "utd"),
        (dict(stock_features=1), "stock_features"),
        (dict(horizon=0, gamma=0.9, time_features=True), "time_features"),
    ],
)
def test_bad_config_raises_before_compile(kwargs, match):
    with raises_before_compile(match=match):
        deep.DDPConfig(**kwargs)


def test_objective_that_needs_gamma_one_warns():
    with pytest.warns(UserWarning, match="gamma = 1"):
        deep.DDPConfig(objective_family=O.EXP_UTILITY, objective_params=(1.0, 0.0, 0.0), gamma=0.9)
    deep.DDPConfig(objective_family=O.CVAR, gamma=0.9)  # scale-consistent: no warning


def test_bad_env_raises_before_compile():
    env, _ = to_env(bandit(), max_steps=1)
    # Built outside the checks: the first config built in a process compiles its validation.
    horizon_16, horizon_1 = deep.DDPConfig(horizon=16), deep.DDPConfig(horizon=1)
    with raises_before_compile(match="horizon"):
        deep.make_agent(env, horizon_16)
    with raises_before_compile(match="inner env"):
        deep.make_agent(stock_lib.StockWrapper(env), horizon_1)
    cartpole, _ = envs.make("gymnax/CartPole-v1")
    with pytest.raises(ValueError, match="Environment"):
        deep.make_agent(cartpole, deep.DDPConfig(horizon=0, gamma=0.99))


def test_config_for_mdp_covers_the_returns_and_stocks():
    cfg = deep.config_for_mdp(ddp_grid(), 16)
    assert (cfg.v_min, cfg.v_max, cfg.num_atoms) == (-16.0, 32.0, 49)
    assert (cfg.stock_low, cfg.stock_high) == (-32.0, 16.0)
    assert cfg.objective_family == O.NEG_ABS
    cfg = deep.config_for_mdp(ddp_grid(), 16, O.cvar(0.25), head="qr", c0_range=(-5.0, 5.0))
    assert cfg.objective_family == O.CVAR and cfg.num_atoms == 32 and (cfg.c0_low, cfg.c0_high) == (-5.0, 5.0)


def test_return_to_go_bounds_cover_every_state_not_just_the_start():
    """risky_grid, H = 10: from the start the returns lie in [-13, 7] (the goal after at
    least 3 steps of -1), but from a cell next to the goal the return-to-go is +10, and
    9 wall bumps (-1) then lava (-4) give -13. ddp_grid: staying on the +2 cell for 16
    steps gives 32, on the -1 cell -16 (the crude H * reward bounds are tight there)."""
    assert deep.return_to_go_bounds(risky_grid(0.2), 10) == (-13.0, 10.0)
    assert deep.return_to_go_bounds(ddp_grid(), 16) == (-16.0, 32.0)
    assert deep.return_to_go_bounds(ddp_grid(True), 16) == (-32.0, 64.0)
    assert deep.return_to_go_bounds(bandit(), 1) == (0.0, 4.0)
    lo, hi = deep.return_to_go_bounds(bandit(), 1, 0.5)  # gamma does not matter for one step
    assert (lo, hi) == (0.0, 4.0)
    cfg = deep.config_for_mdp(risky_grid(0.2), 10, O.cvar(0.25), lattice_features=True)
    assert (cfg.v_min, cfg.v_max, cfg.num_atoms) == (-13.0, 10.0, 24)
    assert (cfg.stock_low, cfg.stock_high, cfg.stock_features, cfg.time_features) == (-10.0, 13.0, 24, True)


def test_hat_features_are_one_hot_on_the_lattice_and_interpolate_between():
    x = jnp.array([-2.0, -1.0, 0.5, 3.0, 7.0])
    h = np.asarray(deep.hat_features(x, -1.0, 3.0, 5))  # centres -1, 0, 1, 2, 3
    np.testing.assert_allclose(h, [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0.5, 0.5, 0, 0], [0, 0, 0, 0, 1],
                                   [0, 0, 0, 0, 1]], atol=1e-6)
    # The network gets the scalar stock, 24 stock hats, time-to-go / H and 11 time hats.
    mdp = risky_grid(0.2)
    env, _ = to_env(mdp, max_steps=10)
    cfg = deep.config_for_mdp(mdp, 10, O.cvar(0.25), lattice_features=True, hidden=(8,), head_hidden=(8,))
    assert deep.num_extras(cfg) == 1 + 24 + 1 + 11
    params = deep.make_params(env, cfg, jax.random.key(0))
    kernel = params.online["params"]["MLP_1"]["Dense_0"]["kernel"]
    assert kernel.shape == (8 + deep.num_extras(cfg), 8)


# -- the greedy rule on hand-computed distributions ------------------------------------


def constant_network(agent_params, out):
    """Params whose network outputs `out: [A, M]` for every input (zero kernels, the
    last layer's bias = out)."""
    zeroed = jax.tree.map(jnp.zeros_like, agent_params.online)
    inner = dict(zeroed["params"])
    inner["Dense_0"] = dict(inner["Dense_0"], bias=jnp.asarray(out, jnp.float32).reshape(-1))
    online = {"params": inner}
    return agent_params.replace(online=online, target=online)


@pytest.mark.parametrize("head", ["c51", "qr"])
def test_greedy_action_matches_hand_computation(head):
    """a0 has return -1 or 2 (1/2 each), a1 returns 0 for sure; atoms {-1, 0, 1, 2}.

    identity (mean): a0 (0.5 > 0).
    threshold 1{c + Z >= 0}: at c = -1, P(Z >= 1) = 1/2 vs 0: a0; at c = 0, 1/2 vs 1: a1.
    -|c + Z|: at c = 0, -(1 + 2)/2 = -1.5 vs 0: a1; at c = -1.5, -(2.5 + 0.5)/2 = -1.5 vs -1.5 (tie, a0)
    and at c = -1.6, -(2.6 + 0.4)/2 = -1.5 vs -1.6: a0 (the shift by c matters: greedy on
    -|Z| alone would pick a1 everywhere).
    min(c + Z, 0) (CVaR's inner problem): at c = 0, -0.5 vs 0: a1; at c = 1, 0 vs 0 (tie);
    at c = -0.5, -0.75 vs -0.5: a1; at c = -3, (-4 - 1)/2 = -2.5 vs -3: a0.
    """
    env, params = to_env(make_mdp(np.ones((1, 2, 1)), np.zeros((1, 2))), max_steps=4)
    if head == "c51":
        probs = np.array([[0.5, 0.0, 0.0, 0.5], [0.0, 1.0, 0.0, 0.0]])
        out = np.log(probs + 1e-30)
        kw = dict(num_atoms=4, v_min=-1.0, v_max=2.0)
    else:
        out = np.array([[-1.0, 2.0], [0.0, 0.0]])
        kw = dict(num_atoms=2)
    cases = [  # (family, stock, expected scores, expected action)
        (O.IDENTITY, 0.0, [0.5, 0.0], 0),
        (O.THRESHOLD, -1.0, [0.5, 0.0], 0),
        (O.THRESHOLD, 0.0, [0.5, 1.0], 1),
        (O.NEG_ABS, 0.0, [-1.5, 0.0], 1),
        (O.NEG_ABS, -1.6, [-1.5, -1.6], 0),
        (O.CVAR, 0.0, [-0.5, 0.0], 1),
        (O.CVAR, -0.5, [-0.75, -0.5], 1),
        (O.CVAR, -3.0, [-2.5, -3.0], 0),
    ]
    cfgs = [deep.DDPConfig(head=head, horizon=4, objective_family=fam, **kw) for fam, *_ in cases]
    agent = deep.make_agent(env, cfgs[0])
    value_fn = deep.make_value_fn(env, cfgs[0])
    p = constant_network(deep.make_params(env, cfgs[0], jax.random.key(0)), out)

    @jax.jit
    def both(c, stock):
        obs = {"obs": jnp.array([1.0]), "stock": stock, "time_to_go": jnp.asarray(3, jnp.int32)}
        scores = value_fn(p, jax.tree.map(lambda x: x[None], obs), c)[0]
        return scores, agent.act(p, obs, jax.random.key(0), c, True)

    for (fam, stock, want, action), c in zip(cases, cfgs):
        scores, a = both(c, jnp.float32(stock))
        np.testing.assert_allclose(scores, want, atol=1e-5, err_msg=f"{O.FAMILIES[fam]} at c={stock}")
        assert int(a) == action, f"{O.FAMILIES[fam]} at c={stock}: {int(a)} != {action}"


# -- populations over seeds and objectives; a fast learning check ------------------------

# (objective, c_0, the optimal action): target 1 -> a0, target 3 -> a1, mean -> a1 (3 > 2 > 1),
# reach 4 -> a2 (P = 1/2 against 0).
OBJECTIVES = [(O.target(1.0), -1.0, 0), (O.target(3.0), -3.0, 1), (O.identity(), 0.0, 1), (O.threshold(4.0), -4.0, 2)]
TINY = dict(
    num_envs=8, learning_starts=64, total_steps=64 + 8 * 150, utd=0.5, batch_size=32, buffer_size=512,
    target_update_period=10, hidden=(16,), head_hidden=(16,), lr=3e-3, eps_fraction=0.5,
)  # fmt: skip


@pytest.fixture(scope="module")
def population():
    """4 objectives x 2 seeds, one `jit(vmap(train))`; c_0 is sampled on the whole stock
    range in training, so every member must learn Z(s, c, a) for every stock."""
    env, params = to_env(bandit(), max_steps=1)
    cfgs = [deep.config_for_mdp(bandit(), 1, obj, **TINY) for obj, _, _ in OBJECTIVES for _ in range(2)]
    agent = deep.make_agent(env, cfgs[0])
    pop = stack(cfgs)
    keys = jax.random.split(jax.random.key(0), len(cfgs))
    train = make_train(agent, cfgs[0])
    state, metrics = jax.jit(jax.vmap(train, (0, 0, None)))(keys, pop, params)
    return env, params, agent, cfgs, pop, keys, train, state, metrics


def test_population_learns_each_objectives_action(population):
    env, params, agent, cfgs, pop, _, _, state, metrics = population
    assert np.all(np.isfinite(np.asarray(metrics["loss"])))
    # The support [0, 4] covers every return: no target mass is clipped at its edges.
    assert np.max(np.asarray(metrics["clipped"])) < 1e-6
    c0 = jnp.asarray([c for _, c, _ in OBJECTIVES for _ in range(2)], jnp.float32)

    @jax.jit
    @jax.vmap
    def greedy(p, c, c0):
        obs = {"obs": jnp.array([1.0, 0.0]), "stock": c0, "time_to_go": jnp.asarray(1, jnp.int32)}
        return agent.act(p, obs, jax.random.key(0), c, True)

    actions = np.asarray(greedy(agent.policy_params(state), pop, c0))
    expected = np.array([a for _, _, a in OBJECTIVES for _ in range(2)])
    np.testing.assert_array_equal(actions, expected)


def test_vmapped_member_equals_its_solo_run(population):
    _, params, agent, cfgs, pop, keys, train, state, metrics = population
    i = 5  # objective 2 (mean), seed 1
    solo_state, solo_metrics = jax.jit(train)(keys[i], cfgs[i], params)
    np.testing.assert_allclose(solo_metrics["loss"], metrics["loss"][i], rtol=2e-4, atol=1e-5)
    np.testing.assert_array_equal(solo_metrics["env_steps"], metrics["env_steps"][i])
    for a, b in zip(jax.tree.leaves(solo_state.params.online), jax.tree.leaves(state.params.online)):
        np.testing.assert_allclose(a, b[i], rtol=1e-3, atol=1e-4)


def test_replay_holds_stocks_and_time_to_go(population):
    _, _, _, cfgs, _, _, _, state, _ = population
    data = jax.tree.map(lambda x: np.asarray(x[0]), state.buffer.data)
    n = int(state.buffer.size[0])
    # Episodes last one step: every stored transition starts with time-to-go 1 and ends it.
    assert np.all(data.obs["time_to_go"][:n] == 1) and np.all(data.next_obs["time_to_go"][:n] == 0)
    np.testing.assert_allclose(data.next_obs["stock"][:n], data.obs["stock"][:n] + data.reward[:n], rtol=1e-6)
    assert np.all((data.obs["stock"][:n] >= cfgs[0].c0_low) & (data.obs["stock"][:n] <= cfgs[0].c0_high))


# -- slow: the behaviour targets ---------------------------------------------------


def _load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(os.path.dirname(path)), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_deep_agent_hits_requested_returns_on_the_grid():
    """Categorical DηN, 1e5 env steps (about 2 min on 2 CPU cores): the greedy return at
    c_0 = -target is within 0.5 of the target for >= 90% of the attainable targets in
    [-16, 40] on the deterministic 4x4 grid (`ddp_grid`)."""
    mdp = ddp_grid(False)
    env, params = to_env(mdp, max_steps=16)
    cfg = deep.config_for_mdp(mdp, 16, O.target(0.0), c0_range=(-40.0, 16.0), stock_spacing=1.0, total_steps=100_000)
    agent = deep.make_agent(env, cfg)
    state, _ = jax.jit(make_train(agent, cfg))(jax.random.key(0), cfg, params)
    targets = np.arange(-16, 41)
    returns = jax.jit(jax.vmap(lambda c0: deep.evaluate(agent, state.params, cfg, env, params, jax.random.key(1), c0, 1)["return"][0]))(
        -jnp.asarray(targets, jnp.float32))
    attainable = np.isin(targets, achievable_returns(mdp, 16))
    hit = np.abs(np.asarray(returns) - targets) <= 0.5
    print(f"hit {hit[attainable].sum()} of {attainable.sum()} attainable targets")
    assert hit[attainable].mean() >= 0.9


@pytest.fixture(scope="module")
def deep_cvar_8_seeds():
    """Categorical DηN with f = min(x, 0) and `experiments/ddp/cvar/run.py`'s settings
    (support over the returns-to-go of every state, lattice features of stock and
    time-to-go), CVAR_STEPS env steps, 8 seeds trained as one population; each picks c_0
    by the Rockafellar–Uryasev search on its network's start-state values. Judged by exact
    policy evaluation, not sampling: the network's greedy action is tabulated at every
    (time, state, integer stock) and its return law computed by tabular policy evaluation.
    Also a risk-neutral DQN trained as long, its greedy policy evaluated exactly too.
    `experiments/ddp/cvar/seeds.py --seeds 8` runs the same population (same keys)."""
    tau, H = 0.25, 10
    run = _load(os.path.join(ROOT, "experiments/ddp/cvar/run.py"))
    common = run.common
    mdp = risky_grid(0.2)
    env, params = to_env(mdp, max_steps=H)
    grid = T.exact_grid(mdp, H)
    _, optimum, _ = T.solve(mdp, O.cvar(tau), grid, 1.0, horizon=H, exact=True)
    cfg = run.deep_config(mdp, total_steps=CVAR_STEPS)
    value_fn = deep.make_value_fn(env, cfg)
    c0s = jnp.arange(cfg.stock_low, cfg.stock_high + 0.5, 1.0)

    def exact_cvar(policy, c0):
        return dist.cvar(grid.atoms, deep.exact_return_law(mdp, policy, grid, c0, H), tau)

    def deep_cvar(state, c, ep, key):
        c0, _ = deep.select_c0(value_fn, state.params, c, env, ep, key, tau, c0s)
        return exact_cvar(deep.greedy_table(value_fn, state.params, c, mdp.num_states, grid.stocks, H), c0), c0

    (cvars, c0), metrics, _ = common.train_and_evaluate(deep.make_agent(env, cfg), [cfg], [params], 8, deep_cvar)
    dcfg = common.dqn_config(total_steps=CVAR_STEPS)
    dagent = dqn.make_agent(env, dcfg)
    dstate, _ = jax.jit(make_train(dagent, dcfg))(jax.random.key(0), dcfg, params)
    # DQN sees the state only: its greedy action per state, the same at every time and stock.
    acts = jax.vmap(lambda o: dagent.act(dagent.policy_params(dstate), o, jax.random.key(0), dcfg, True))(
        jnp.eye(mdp.num_states, dtype=jnp.float32))
    dqn_policy = jnp.broadcast_to(acts[None, :, None], (H, mdp.num_states, grid.num_stocks)).astype(jnp.int32)
    dqn_cvar = float(exact_cvar(dqn_policy, 0.0))  # the law of G does not depend on c_0 here
    gaps = np.abs(np.asarray(cvars) - float(optimum)) / abs(float(optimum))
    print(f"exact CVaR_{tau}: DVI optimum {float(optimum):.3f}; DηN {np.round(cvars, 3)} (c0 {np.asarray(c0)}, gaps "
          f"{np.round(gaps, 3)}, {int(np.sum(gaps <= 0.1))} of 8 within 10%); DQN {dqn_cvar:.3f}")
    return dict(cvars=np.asarray(cvars), gaps=gaps, dqn_cvar=dqn_cvar, clipped=np.asarray(metrics["clipped"]))


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the fixture trains 8 seeds: about 13 min at load 2-4
def test_deep_cvar_beats_risk_neutral_dqn_on_every_seed(deep_cvar_8_seeds):
    """Every seed's exact CVaR_0.25 is above the risk-neutral DQN's, and no target mass
    is clipped (the support covers the returns-to-go)."""
    r = deep_cvar_8_seeds
    assert np.max(r["clipped"]) < 1e-3
    assert np.all(r["cvars"] > r["dqn_cvar"])


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.xfail(strict=False, reason="the issue's target is not met yet: 5 of 8 seeds within 10% by exact evaluation "
                   "(gaps 3.2, 2.8, 7.2, 4.0, 20.3, 0.0, 10.4, 16.7%; 7 of 8 from each policy's best c_0 in "
                   "hindsight), measured 2026-12-03; see experiments/ddp/cvar/README.md")
def test_deep_cvar_is_within_10_percent_of_the_dvi_optimum_on_3_in_4_seeds(deep_cvar_8_seeds):
    """The issue's target: the exact CVaR_0.25 of at least 6 of the 8 seeds is within 10%
    of the exact stock-DVI optimum."""
    assert np.sum(deep_cvar_8_seeds["gaps"] <= 0.1) >= 6
