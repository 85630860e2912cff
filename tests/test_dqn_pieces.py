"""DQN taken apart: the target and loss pieces are importable and replaceable.

An injected piece that equals the default gives the default run bit for bit (so the
plumbing adds nothing); a different target reaches the update (so it is really used);
the target and loss pieces alone, and their composition `dqn_loss`, match rlax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax
from golden.cases import TINY_DQN

from rlx import distributional as dist
from rlx.agents import dqn
from rlx.running_stats import init_stats
from rlx.train import make_train

B, A, M = 16, 3, 11


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True))


@pytest.fixture(scope="module")
def q_cfg():
    return dqn.DQNConfig(**TINY_DQN, double_q=True)


@pytest.fixture(scope="module")
def default_train(cartpole, q_cfg):
    """The default agent's jitted train function (one compile, shared by the tests)."""
    return jax.jit(make_train(dqn.make_agent(cartpole[0], q_cfg), q_cfg))


def test_injected_default_pieces_give_the_default_run_bitwise(cartpole, q_cfg, default_train):
    env, params = cartpole
    base_state, base = default_train(jax.random.key(0), q_cfg, params)
    agent = dqn.make_agent(
        env, q_cfg,
        targets=lambda reward, discount, next_out, next_q, c: dqn.q_targets(reward, discount, next_out, next_q, c),
        loss=lambda out, action, target, c: dqn.q_loss(out, action, target, c),
    )  # fmt: skip
    state, metrics = jax.jit(make_train(agent, q_cfg))(jax.random.key(0), q_cfg, params)
    assert _same(base_state.params, state.params)
    for k in ("loss", "q", "episode_return"):
        np.testing.assert_array_equal(np.asarray(base[k]), np.asarray(metrics[k]), err_msg=k)


def test_a_reward_only_target_reaches_the_update(cartpole, q_cfg, default_train):
    """A target of r alone never reads the target network, so the run cannot depend on
    how that network moves (tau, a traced field: no recompile); the default target does."""
    env, params = cartpole
    calls = []

    def reward_only(reward, discount, next_out, next_q, c):
        calls.append(reward.shape)
        return reward

    train = jax.jit(make_train(dqn.make_agent(env, q_cfg, targets=reward_only), q_cfg))
    frozen = q_cfg.replace(tau=0.0)  # the target network never leaves its initial weights
    r_state, r_metrics = train(jax.random.key(0), q_cfg, params)
    traced = len(calls)
    r_frozen, r_frozen_metrics = train(jax.random.key(0), frozen, params)
    assert traced and len(calls) == traced, "the injected target was not traced, or tau recompiled"
    assert set(calls) == {(q_cfg.batch_size,)}
    assert _same(r_state.params.online, r_frozen.params.online)
    np.testing.assert_array_equal(np.asarray(r_metrics["loss"]), np.asarray(r_frozen_metrics["loss"]))
    d_state, d_metrics = default_train(jax.random.key(0), q_cfg, params)
    d_frozen, d_frozen_metrics = default_train(jax.random.key(0), frozen, params)
    assert not np.array_equal(np.asarray(d_metrics["loss"]), np.asarray(d_frozen_metrics["loss"]))
    assert not _same(d_state.params.online, d_frozen.params.online)
    assert not np.array_equal(np.asarray(d_metrics["loss"]), np.asarray(r_metrics["loss"]))


# -- the pieces alone against rlax -------------------------------------------------------------


def _batch(seed):
    rng = np.random.default_rng(seed)
    f = lambda *shape: jnp.asarray(rng.normal(size=shape).astype(np.float32))  # noqa: E731
    a = jnp.asarray(rng.integers(0, A, B).astype(np.int32))
    discount = jnp.asarray((0.99 * (rng.uniform(size=B) > 0.2)).astype(np.float32))  # some terminal steps
    return f, a, f(B), discount


@pytest.mark.parametrize("seed", [0, 1])
def test_q_target_and_loss_equal_rlax(seed):
    f, a, r, discount = _batch(seed)
    q_tm1, q_t, q_sel = f(B, A), f(B, A), f(B, A)
    c = dqn.DQNConfig()
    for selector, ref in ((q_sel, jax.vmap(rlax.double_q_learning)(q_tm1, a, r, discount, q_t, q_sel)),
                          (q_t, jax.vmap(rlax.q_learning)(q_tm1, a, r, discount, q_t))):  # fmt: skip
        y = dqn.q_targets(r, discount, q_t, selector, c)
        np.testing.assert_allclose(y - q_tm1[jnp.arange(B), a], ref, atol=1e-6)
        np.testing.assert_allclose(dqn.q_loss(q_tm1, a, y, c), jnp.mean(rlax.l2_loss(ref)), rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_categorical_target_and_loss_equal_rlax(seed):
    f, a, r, discount = _batch(seed)
    logits_tm1, logits_t, q_sel = 2 * f(B, A, M), 2 * f(B, A, M), f(B, A)
    c = dqn.C51Config(v_min=-3.0, v_max=4.0, num_atoms=M)
    z = dqn.support(c, M)
    y = dqn.categorical_targets(r, discount, logits_t, q_sel, c)
    p_next = jax.nn.softmax(logits_t[jnp.arange(B), jnp.argmax(q_sel, -1)])
    ref_y = jax.vmap(rlax.categorical_l2_project, (0, 0, None))(r[:, None] + discount[:, None] * z, p_next, z)
    np.testing.assert_allclose(y, ref_y, atol=1e-6)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
    ref = jax.vmap(rlax.categorical_double_q_learning, (None, 0, 0, 0, 0, None, 0, 0))
    ours = lambda lg: dqn.categorical_loss(lg, a, y, c)  # noqa: E731
    theirs = lambda lg: jnp.mean(ref(z, lg, a, r, discount, z, logits_t, q_sel))  # noqa: E731
    np.testing.assert_allclose(ours(logits_tm1), theirs(logits_tm1), rtol=1e-5)
    np.testing.assert_allclose(jax.grad(ours)(logits_tm1), jax.grad(theirs)(logits_tm1), atol=1e-6)


@pytest.mark.parametrize("kappa", [0.0, 1.0])
def test_quantile_target_and_loss_equal_rlax(kappa):
    f, a, r, discount = _batch(3)
    theta_tm1, theta_t, theta_sel = 3 * f(B, A, M), 3 * f(B, A, M), 3 * f(B, A, M)
    c = dqn.QRDQNConfig(num_atoms=M, huber_kappa=kappa)
    y = dqn.quantile_targets(r, discount, theta_t, theta_sel.mean(-1), c)
    a_star = jnp.argmax(theta_sel.mean(-1), -1)
    np.testing.assert_allclose(y, r[:, None] + discount[:, None] * theta_t[jnp.arange(B), a_star], rtol=1e-6)
    taus = dist.quantile_midpoints(M)
    # rlax wants [M, A] quantiles and selects a* from the mean of dist_q_t_selector.
    ref = jax.vmap(lambda q1, a_, r_, d, sel, q2: rlax.quantile_q_learning(q1.T, taus, a_, r_, d, sel.T, q2.T, kappa))
    ours = lambda th: dqn.quantile_loss(th, a, y, c)  # noqa: E731
    theirs = lambda th: jnp.mean(ref(th, a, r, discount, theta_sel, theta_t))  # noqa: E731
    np.testing.assert_allclose(ours(theta_tm1), theirs(theta_tm1), rtol=1e-5)
    np.testing.assert_allclose(jax.grad(ours)(theta_tm1), jax.grad(theirs)(theta_tm1), atol=1e-6)


@pytest.mark.parametrize("double_q", [True, False])
def test_dqn_loss_composes_the_pieces_like_rlax(cartpole, double_q):
    """`dqn_loss` on network outputs: reward scaling, discount on termination only, and
    the bootstrap action chosen by the online (double_q) or the target network."""
    env, _ = cartpole
    cfg = dqn.DQNConfig(hidden=(16,), double_q=double_q, reward_scale=2.0, gamma=0.9)
    nets = dqn.make_networks(env, cfg)
    k_on, k_tg = jax.random.split(jax.random.key(0))
    dummy = jnp.zeros((1,) + nets.obs_shape)
    online, target = nets.network.init(k_on, dummy, 1), nets.network.init(k_tg, dummy, 1)
    params = dqn.DQNParams(online, target, init_stats(nets.obs_shape))
    rng = np.random.default_rng(0)
    obs, next_obs = (jnp.asarray(rng.normal(size=(B, 4)), jnp.float32) for _ in range(2))
    a = jnp.asarray(rng.integers(0, 2, B), jnp.int32)
    r = jnp.asarray(rng.normal(size=B), jnp.float32)
    term = jnp.asarray(rng.uniform(size=B) < 0.3)
    mb = dqn.Transition(obs, a, r, next_obs, term, jnp.zeros(B, bool))
    loss, aux = dqn.dqn_loss(nets, cfg, cfg, params, online, target, mb, dqn.q_targets, dqn.q_loss)
    q_tm1 = nets.network.apply(online, obs, 1)
    q_t = nets.network.apply(target, next_obs, 1)
    selector = nets.network.apply(online if double_q else target, next_obs, 1)
    td = jax.vmap(rlax.double_q_learning)(q_tm1, a, 2.0 * r, 0.9 * (1.0 - term), q_t, selector)
    np.testing.assert_allclose(loss, jnp.mean(0.5 * td**2), rtol=1e-6)
    np.testing.assert_allclose(aux["q"], q_tm1[jnp.arange(B), a].mean(), rtol=1e-6)
