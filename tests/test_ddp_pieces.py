"""DηN (agents/ddp/deep.py) taken apart: the target and loss pieces are importable and
replaceable, as in DQN.

An injected piece that equals the default gives the default run bit for bit (so the
plumbing adds nothing); a different target reaches the update (so it is really used);
the pieces alone match closed forms computed here by hand, and `ddp_loss` is rlax's
C51 / QR-DQN loss with the stock-augmented selector `E f(c' + Z(s', c', ·))`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

from rlx import distributional as dist
from rlx import replay
from rlx.agents import dqn
from rlx.agents.ddp import deep
from rlx.agents.ddp import objectives as O
from rlx.envs.tabular import ddp_grid, to_env
from rlx.testing import host_leaves
from rlx.train import make_train

H = 16
TINY = dict(
    num_envs=4, learning_starts=32, total_steps=32 + 4 * 4, utd=0.5, batch_size=16, buffer_size=64,
    target_update_period=2, hidden=(8,), head_hidden=(8,), lr=3e-3, stock_spacing=1.0,
)  # fmt: skip
N = 16
CALLS = []  # shapes each time the injected target is traced


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(host_leaves(a), host_leaves(b), strict=True))


@pytest.fixture(scope="module")
def grid():
    mdp = ddp_grid(False)
    env, params = to_env(mdp, max_steps=H)
    return mdp, env, params


def _cfg(mdp, **kw):
    return deep.config_for_mdp(mdp, H, O.target(0.0), c0_range=(-40.0, 16.0), **{**TINY, **kw})


@pytest.fixture(scope="module")
def cfg(grid):
    return _cfg(grid[0])


@pytest.fixture(scope="module")
def default_runs(grid, cfg):
    """`{tau: (state, metrics)}` of the default agent at tau 1 (its own: the target network
    copies the online one) and 0 (it stays at init): one compile for the tests."""
    assert cfg.tau == 1.0
    train = jax.jit(make_train(deep.make_agent(grid[1], cfg), cfg))
    return {tau: train(jax.random.key(0), cfg.replace(tau=tau), grid[2]) for tau in (1.0, 0.0)}


def test_injected_default_pieces_give_the_default_run_bitwise(grid, cfg, default_runs):
    agent = deep.make_agent(
        grid[1], cfg,
        targets=lambda r, d, next_out, selector, c: dqn.categorical_targets(r, d, next_out, selector, c),
        loss=lambda out, action, target, c: dqn.categorical_loss(out, action, target, c),
    )  # fmt: skip
    state, metrics = jax.jit(make_train(agent, cfg))(jax.random.key(0), cfg, grid[2])
    base_state, base = default_runs[cfg.tau]
    assert _same(base_state, state)
    assert set(base) == set(metrics) and {"loss", "value", "clipped"} <= set(base)
    for k in base:
        np.testing.assert_array_equal(np.asarray(base[k]), np.asarray(metrics[k]), err_msg=k)


def test_a_reward_only_target_reaches_the_update(grid, cfg, default_runs):
    """A target of the point mass at r never reads the target network, so the online
    network cannot depend on how that moves (tau 1: copies, tau 0: frozen at init; tau
    is traced: no recompile); with the default target it does."""
    _, env, params = grid
    z = dist.categorical_support(cfg.v_min, cfg.v_max, cfg.num_atoms)

    def reward_only(reward, discount, next_out, selector, c):
        CALLS.append((reward.shape, next_out.shape, selector.shape))
        return jax.vmap(lambda r: dist.dirac(r, z))(reward)

    train = jax.jit(make_train(deep.make_agent(env, cfg, targets=reward_only), cfg))
    moved, m_metrics = train(jax.random.key(0), cfg.replace(tau=1.0), params)
    traced = len(CALLS)
    frozen, f_metrics = train(jax.random.key(0), cfg.replace(tau=0.0), params)
    assert traced and len(CALLS) == traced, "the injected target was not traced, or tau recompiled"
    a, m = grid[1].action_space(params).n, cfg.num_atoms
    assert set(CALLS) == {((cfg.batch_size,), (cfg.batch_size, a, m), (cfg.batch_size, a))}
    assert not _same(moved.params.target, frozen.params.target)
    assert _same(moved.params.online, frozen.params.online)
    np.testing.assert_array_equal(np.asarray(m_metrics["loss"]), np.asarray(f_metrics["loss"]))
    (d_moved, d_metrics), (d_frozen, d_f_metrics) = default_runs[1.0], default_runs[0.0]
    assert not _same(d_moved.params.online, d_frozen.params.online)
    assert not np.array_equal(np.asarray(d_metrics["loss"]), np.asarray(d_f_metrics["loss"]))
    assert not np.array_equal(np.asarray(d_metrics["loss"]), np.asarray(m_metrics["loss"]))


# -- the pieces alone --------------------------------------------------------------------------


def _minibatch(nets, seed, stock_low=-32.0, stock_high=16.0):
    """N random stock-augmented transitions, some terminated, some truncated."""
    rng = np.random.default_rng(seed)
    obs_dim = nets.transition.obs["obs"].shape[0]

    def obs():
        return {"obs": jnp.asarray(np.eye(obs_dim, dtype=np.float32)[rng.integers(0, obs_dim, N)]),
                "stock": jnp.asarray(rng.integers(stock_low, stock_high + 1, N).astype(np.float32)),
                "time_to_go": jnp.asarray(rng.integers(0, H + 1, N).astype(np.int32))}  # fmt: skip

    action = jnp.asarray(rng.integers(0, nets.num_actions, N).astype(np.int32))
    reward = jnp.asarray(rng.integers(-1, 3, N).astype(np.float32))
    term, trunc = (jnp.asarray(rng.uniform(size=N) < 0.25) for _ in range(2))
    return replay.Transition(obs(), action, reward, obs(), term, trunc)


def _params(nets, seed):
    """Params with an online and a target network initialised apart."""
    init = jax.jit(lambda k: deep.init_params(nets, k))
    k_on, k_tg = jax.random.split(jax.random.key(seed))
    return init(k_on).replace(target=init(k_tg).online)


def _jitted(nets, cfg, params):
    """`values(online, obs)` and `ddp_loss(mb, targets, loss)` at `params`, each compiled once."""
    values = jax.jit(lambda online, obs: deep.values(nets, online, params.obs_stats, obs, cfg))
    loss = jax.jit(lambda mb, targets, loss: deep.ddp_loss(nets, cfg, cfg, params, params.online, params.target, mb,
                                                          jax.random.key(0), targets, loss), static_argnums=(1, 2))
    return values, loss


@pytest.mark.parametrize("head", ["c51", "qr"])
def test_stock_scores_are_expected_utilities_at_the_stock(grid, head):
    cfg = _cfg(grid[0], head=head)
    nets = deep.make_networks(grid[1], cfg)
    rng = np.random.default_rng(0)
    out = jnp.asarray(rng.normal(size=(N, nets.num_actions, nets.num_atoms)) * 3, jnp.float32)
    stock = jnp.asarray(rng.uniform(-10, 10, N), jnp.float32)
    scores = np.asarray(deep.stock_scores(nets, out, stock, cfg))
    o, c = np.asarray(out, np.float64), np.asarray(stock, np.float64)[:, None, None]
    if head == "c51":  # f(x) = -|x| over the categorical law on the support
        z = np.linspace(cfg.v_min, cfg.v_max, cfg.num_atoms)
        p = np.exp(o - o.max(-1, keepdims=True))
        by_hand = (p / p.sum(-1, keepdims=True) * -np.abs(c + z)).sum(-1)
    else:  # equal-mass quantiles
        by_hand = (-np.abs(c + o)).mean(-1)
    np.testing.assert_allclose(scores, by_hand, rtol=1e-5, atol=1e-5)


def test_bootstrap_discount_ends_the_return_at_the_horizon():
    t = np.array([True, False, False, True])
    mb = replay.Transition(None, None, None, None, jnp.asarray(t), jnp.asarray([False, True, False, True]))
    c = deep.DDPConfig(gamma=0.9)
    np.testing.assert_allclose(deep.bootstrap_discount(mb, c, horizon=H), [0.0, 0.0, 0.9, 0.0], rtol=1e-6)
    np.testing.assert_allclose(deep.bootstrap_discount(mb, c, horizon=0), [0.0, 0.9, 0.9, 0.0], rtol=1e-6)


def test_relabel_gives_lattice_stocks_and_their_next_stocks(grid, cfg):
    nets = deep.make_networks(grid[1], cfg)
    mb = _minibatch(nets, 0)
    c = cfg.replace(gamma=0.5, relabel_prob=1.0, stock_spacing=2.0)
    new = deep.relabel(mb, jax.random.key(3), c)
    stock, next_stock = np.asarray(new.obs["stock"]), np.asarray(new.next_obs["stock"])
    assert not np.array_equal(stock, np.asarray(mb.obs["stock"]))
    np.testing.assert_array_equal(stock % 2.0, 0.0)
    assert np.all((stock >= cfg.stock_low) & (stock <= cfg.stock_high))
    np.testing.assert_allclose(next_stock, (stock + np.asarray(mb.reward)) / 0.5, rtol=1e-6)
    for k in ("obs", "time_to_go"):
        np.testing.assert_array_equal(new.obs[k], mb.obs[k])
    kept = deep.relabel(mb, jax.random.key(3), c.replace(relabel_prob=0.0))
    assert _same(kept, mb)


def test_clipped_mass_is_the_target_mass_beyond_the_support():
    c = deep.DDPConfig(v_min=0.0, v_max=4.0, num_atoms=5)  # atoms 0, 1, 2, 3, 4
    rng = np.random.default_rng(0)
    next_out = jnp.asarray(rng.normal(size=(3, 2, 5)), jnp.float32)
    selector = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # a* = 0, 1, 0
    reward, discount = jnp.asarray([0.0, 2.0, -1.0]), jnp.ones(3)
    got = deep.clipped_mass(reward, discount, next_out, selector, c)
    p = jax.nn.softmax(next_out[jnp.arange(3), jnp.asarray([0, 1, 0])], -1)
    # r = 0 keeps every atom; r = 2 pushes atoms 3, 4 above v_max; r = -1 pushes atom 0 below v_min.
    by_hand = (0.0 + float(p[1, 3] + p[1, 4]) + float(p[2, 0])) / 3
    np.testing.assert_allclose(got, by_hand, rtol=1e-5)


@pytest.mark.parametrize("double_q", [False, True])
def test_c51_loss_is_rlax_with_the_stock_augmented_selector(grid, double_q):
    """No relabelling: `ddp_loss` is rlax's categorical double-Q loss on the network
    outputs, with a* = argmax of `E f(c' + Z(s', c', ·))` (target or online network) and
    no bootstrap after termination or truncation (the horizon)."""
    cfg = _cfg(grid[0], relabel_prob=0.0, double_q=double_q)
    nets = deep.make_networks(grid[1], cfg)
    params, mb = _params(nets, 1), _minibatch(nets, 1)
    values, ddp_loss = _jitted(nets, cfg, params)
    loss, aux = ddp_loss(mb, dqn.categorical_targets, dqn.categorical_loss)
    out, next_out = values(params.online, mb.obs)[0], values(params.target, mb.next_obs)[0]
    sel_out = values(params.online if double_q else params.target, mb.next_obs)[0]
    z = np.linspace(cfg.v_min, cfg.v_max, cfg.num_atoms, dtype=np.float32)
    selector = (jax.nn.softmax(sel_out, -1) * -jnp.abs(mb.next_obs["stock"][:, None, None] + z)).sum(-1)
    discount = 1.0 - (np.asarray(mb.terminated) | np.asarray(mb.truncated)).astype(np.float32)  # gamma = 1
    ref = jax.jit(jax.vmap(rlax.categorical_double_q_learning, (None, 0, 0, 0, 0, None, 0, 0)))(
        jnp.asarray(z), out, mb.action, mb.reward, jnp.asarray(discount), jnp.asarray(z), next_out, selector)
    np.testing.assert_allclose(loss, jnp.mean(ref), rtol=1e-5)
    scores = (jax.nn.softmax(out, -1) * -jnp.abs(mb.obs["stock"][:, None, None] + z)).sum(-1)
    np.testing.assert_allclose(aux["value"], scores[jnp.arange(N), mb.action].mean(), rtol=1e-5)


def test_qr_loss_is_rlax_with_the_stock_augmented_selector(grid):
    cfg = _cfg(grid[0], head="qr", relabel_prob=0.0)
    nets = deep.make_networks(grid[1], cfg)
    params, mb = _params(nets, 2), _minibatch(nets, 2)
    values, ddp_loss = _jitted(nets, cfg, params)
    loss, aux = ddp_loss(mb, dqn.quantile_targets, dqn.quantile_loss)
    assert "clipped" not in aux
    out, next_out = values(params.online, mb.obs)[0], values(params.target, mb.next_obs)[0]
    # rlax selects a* from the mean of dist_q_t_selector: feed it E f(c' + θ) as constant "quantiles".
    selector = (-jnp.abs(mb.next_obs["stock"][:, None, None] + next_out)).mean(-1)
    sel = jnp.broadcast_to(selector[..., None], next_out.shape)
    discount = 1.0 - (np.asarray(mb.terminated) | np.asarray(mb.truncated)).astype(np.float32)
    taus = dist.quantile_midpoints(cfg.num_atoms)
    kappa = cfg.huber_kappa
    ref = jax.jit(jax.vmap(lambda q1, a, r, d, s, q2: rlax.quantile_q_learning(q1.T, taus, a, r, d, s.T, q2.T, kappa)))(
        out, mb.action, mb.reward, jnp.asarray(discount), sel, next_out)
    np.testing.assert_allclose(loss, jnp.mean(ref), rtol=1e-5)


def test_epsilon_greedy_and_act_follow_the_stock_augmented_scores(grid, cfg):
    nets = deep.make_networks(grid[1], cfg)
    params, mb = _params(nets, 3), _minibatch(nets, 3)
    scores = _jitted(nets, cfg, params)[0](params.online, mb.obs)[1]
    key = jax.random.key(5)
    epsilon_greedy = jax.jit(lambda eps: deep.epsilon_greedy(nets, params, mb.obs, key, eps, cfg))
    greedy = epsilon_greedy(jnp.float32(0.0))
    np.testing.assert_array_equal(greedy, np.argmax(np.asarray(scores), -1))
    random = epsilon_greedy(jnp.float32(1.0))
    _, k_rand, _ = jax.random.split(key, 3)
    np.testing.assert_array_equal(random, jax.random.randint(k_rand, (N,), 0, nets.num_actions, jnp.int32))
    assert not np.array_equal(random, greedy)
    one = jax.tree.map(lambda x: x[0], mb.obs)
    act = jax.jit(lambda obs: deep.act(nets, params, obs, key, cfg))
    assert int(act(one)) == int(np.argmax(np.asarray(scores[0])))
