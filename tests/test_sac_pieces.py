"""SAC taken apart: the critic target and the actor loss are importable and replaceable.

An injected piece that equals the default gives the default run bit for bit (so the
plumbing adds nothing); a different critic target or actor loss reaches the update (so
it is really used); the pieces alone match rlax (the squashed-Gaussian log-prob, the
L2 loss), optax (Polyak averaging) or closed forms computed here by hand, and
`gradient_step` composes them as the SAC equations say."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import rlax
from scipy import stats as sps

from rlx import envs
from rlx.agents import sac
from rlx.networks import GaussianActor, QCritic, ensemble_init
from rlx.running_stats import init_stats
from rlx.testing import host_leaves
from rlx.train import make_train

TINY = dict(
    num_envs=2, rollout_steps=2, utd=1.0, learning_starts=32, total_steps=32 + 4 * 3, buffer_size=64,
    batch_size=16, hidden=(8,), critic_hidden=(8,),
)  # fmt: skip
N, K, D = 16, 2, 3


def _same(a, b) -> bool:
    """Bitwise-equal leaves (NaN equal to NaN: `episode_return` before any episode ends)."""
    pairs = zip(host_leaves(a), host_leaves(b), strict=True)
    return all(np.array_equal(x, y, equal_nan=x.dtype.kind == "f") for x, y in pairs)


@pytest.fixture(scope="module")
def pendulum():
    return envs.make("gymnax/Pendulum-v1")


@pytest.fixture(scope="module")
def cfg():
    return sac.SACConfig(**TINY)


@pytest.fixture(scope="module")
def default_runs(pendulum, cfg):
    """`{tau: (state, metrics)}` of the default agent at its own tau, at 1 (target
    critics copy the critics) and at 0 (they stay at init): one compile for the tests."""
    train = jax.jit(make_train(sac.make_agent(pendulum[0], cfg), cfg))
    return {tau: train(jax.random.key(0), cfg.replace(tau=tau), pendulum[1]) for tau in (cfg.tau, 1.0, 0.0)}


def test_injected_default_pieces_give_the_default_run_bitwise(pendulum, cfg, default_runs):
    agent = sac.make_agent(
        pendulum[0], cfg,
        critic_target=lambda r, d, next_q, next_logp, alpha, c: sac.soft_q_target(r, d, next_q, next_logp, alpha, c),
        actor_loss=lambda logp, q, alpha, c: sac.sac_actor_loss(logp, q, alpha, c),
    )  # fmt: skip
    state, metrics = jax.jit(make_train(agent, cfg))(jax.random.key(0), cfg, pendulum[1])
    base_state, base = default_runs[cfg.tau]
    assert _same(base_state, state)
    assert set(base) == set(metrics)
    for k in base:
        np.testing.assert_array_equal(np.asarray(base[k]), np.asarray(metrics[k]), err_msg=k)


CALLS = []  # (piece, shapes) each time an injected piece is traced


def _reward_only(reward, discount, next_q, next_logp, alpha, c):
    CALLS.append(("critic_target", reward.shape, next_q.shape))
    return reward


def _constant(logp, q, alpha, c):
    CALLS.append(("actor_loss", logp.shape, q.shape))
    return jnp.zeros(())


@pytest.fixture(scope="module")
def custom_train(pendulum, cfg):
    """An agent with both custom pieces, a critic target of r alone and a constant actor
    loss (one compile for the two tests below, each checking what its piece does)."""
    agent = sac.make_agent(pendulum[0], cfg, critic_target=_reward_only, actor_loss=_constant)
    train = jax.jit(make_train(agent, cfg))
    runs = {1.0: train(jax.random.key(0), cfg.replace(tau=1.0), pendulum[1])}
    traced = len(CALLS)
    runs[0.0] = train(jax.random.key(0), cfg.replace(tau=0.0), pendulum[1])
    assert len(CALLS) == traced, "tau (a traced field) recompiled"
    start = jax.jit(agent.init)(jax.random.key(0), cfg, pendulum[1])
    return start, runs


def test_custom_pieces_are_traced_with_the_documented_shapes(custom_train, cfg):
    n, k = cfg.batch_size, cfg.num_critics
    assert sorted(set(CALLS)) == [("actor_loss", (n,), (k, n)), ("critic_target", (n,), (k, n))]


def _without_target_critics(state):
    return state.replace(params=state.params.replace(target_critic=None))


def test_a_reward_only_critic_target_reaches_the_update(default_runs, custom_train):
    """A target of r alone never reads the target critics, so nothing else in the run
    can depend on how those move (tau 1: copies, tau 0: frozen at init): the rest of the
    state and every metric are equal bit for bit; with the default target they are not."""
    (moved, m_metrics), (frozen, f_metrics) = custom_train[1][1.0], custom_train[1][0.0]
    assert not _same(moved.params.target_critic, frozen.params.target_critic)
    assert _same(_without_target_critics(moved), _without_target_critics(frozen)) and _same(m_metrics, f_metrics)
    assert not _same(_without_target_critics(default_runs[1.0][0]), _without_target_critics(default_runs[0.0][0]))


def test_a_constant_actor_loss_leaves_the_actor_where_it_started(cfg, default_runs, custom_train):
    """With a constant actor loss every actor gradient is 0, so Adam leaves the actor
    bitwise at its initial weights while the critics still learn; the default loss
    moves it."""
    start, runs = custom_train
    state, metrics = runs[1.0]
    assert _same(start.params.actor, state.params.actor)
    assert not _same(start.params.critic, state.params.critic)
    np.testing.assert_array_equal(np.asarray(metrics["actor_loss"]), 0.0)
    default_state, _ = default_runs[cfg.tau]
    assert not _same(start.params.actor, default_state.params.actor)


# -- the pieces alone --------------------------------------------------------------------------


class FixedActor:
    """Stands in for the actor network: `apply` returns the given (mean, log_std)."""

    def __init__(self, mean, log_std):
        self.out = (jnp.asarray(mean), jnp.asarray(log_std))

    def apply(self, params, obs, batch_dims):
        return self.out


def _nets(actor=None, low=-2.0, high=2.0):
    cfg = sac.SACConfig(hidden=(8,), critic_hidden=(8,))
    return sac.SACNetworks(
        actor=actor, critic=QCritic(cfg.critic_hidden), num_critics=K, act_dim=D,
        low=jnp.full(D, low, jnp.float32), high=jnp.full(D, high, jnp.float32), obs_shape=(4,), normalize_obs=False,
    )  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1])
def test_sample_action_is_a_squashed_gaussian_sample_with_rlax_log_prob(seed):
    rng = np.random.default_rng(seed)
    mean = rng.uniform(-0.8, 0.8, (N, D)).astype(np.float32)
    log_std = rng.uniform(-2.0, -0.5, (N, D)).astype(np.float32)
    key = jax.random.key(seed)
    action, logp = sac.sample_action(_nets(FixedActor(mean, log_std)), None, jnp.zeros((N, 4)), key)
    u = mean + np.exp(log_std) * np.asarray(jax.random.normal(key, (N, D)))
    np.testing.assert_allclose(action, np.tanh(u), rtol=1e-6, atol=1e-7)
    # By hand (float64): the Gaussian density of u, less log|d tanh(u)/du| = log(1 - tanh(u)²).
    u64 = u.astype(np.float64)
    by_hand = (sps.norm.logpdf(u64, mean, np.exp(log_std)) - np.log1p(-np.tanh(u64) ** 2)).sum(-1)
    np.testing.assert_allclose(logp, by_hand, rtol=1e-4, atol=1e-4)
    # rlax's squashed Gaussian takes pre-activation (mu, sigma): loc = tanh(mu) and
    # scale = exp(lo + (hi - lo)(tanh(sigma) + 1)/2); invert both to feed it our (mean, std).
    lo, hi = -4.0, 0.0
    mu = np.arctanh(mean)
    sigma = np.arctanh(2.0 * (log_std - lo) / (hi - lo) - 1.0)
    theirs = rlax.squashed_gaussian(lo, hi).logprob(action, jnp.asarray(mu), jnp.asarray(sigma), None)
    np.testing.assert_allclose(logp, theirs, rtol=1e-3, atol=1e-3)


def test_act_is_the_squashed_mean_in_the_box():
    mean = np.array([[-3.0, 0.0, 0.5]], np.float32)
    nets = _nets(FixedActor(mean, np.zeros((1, D), np.float32)), low=-2.0, high=1.0)
    params = sac.SACParams(None, None, None, jnp.zeros(()), init_stats((4,)))
    a = sac.act(nets, params, jnp.zeros(4), jax.random.key(0), sac.SACConfig())
    np.testing.assert_allclose(a, -2.0 + (np.tanh(mean[0]) + 1.0) * 0.5 * 3.0, rtol=1e-6)
    noisy = sac.act(nets, params, jnp.zeros(4), jax.random.key(0), sac.SACConfig(), deterministic=False)
    assert np.all((noisy >= -2.0) & (noisy <= 1.0)) and not np.allclose(noisy, a)


def _batch(seed, k=K):
    rng = np.random.default_rng(seed)
    f = lambda *shape: jnp.asarray(rng.normal(size=shape).astype(np.float32))  # noqa: E731
    discount = jnp.asarray((0.99 * (rng.uniform(size=N) > 0.25)).astype(np.float32))  # some terminal steps
    return f, f(N), discount, f(k, N)


@pytest.mark.parametrize("k", [2, 3])
def test_soft_q_target_is_the_clipped_double_q_soft_target(k):
    f, r, discount, next_q = _batch(k, k)
    next_logp, alpha = f(N), jnp.float32(0.3)
    y = sac.soft_q_target(r, discount, next_q, next_logp, alpha, sac.SACConfig())
    q = np.asarray(next_q)
    by_hand = np.array([r[n] + discount[n] * (min(q[j, n] for j in range(k)) - 0.3 * next_logp[n]) for n in range(N)])
    np.testing.assert_allclose(y, by_hand, rtol=1e-6, atol=1e-6)


def test_critic_loss_is_rlax_l2_summed_over_critics():
    f, y, _, q = _batch(2)
    loss = sac.critic_loss(q, y)
    theirs = sum(jnp.mean(rlax.l2_loss(q[j] - y)) for j in range(K))
    np.testing.assert_allclose(loss, theirs, rtol=1e-6)
    np.testing.assert_allclose(jax.grad(sac.critic_loss)(q, y), (q - y) / N, rtol=1e-5, atol=1e-7)


def test_actor_loss_uses_the_smaller_critic():
    f, logp, _, q = _batch(3)
    alpha = jnp.float32(0.2)
    loss = sac.sac_actor_loss(logp, q, alpha, sac.SACConfig())
    q_min = np.minimum(np.asarray(q[0]), np.asarray(q[1]))
    np.testing.assert_allclose(loss, np.mean(0.2 * np.asarray(logp) - q_min), rtol=1e-5)
    g_logp, g_q = jax.grad(sac.sac_actor_loss, (0, 1))(logp, q, alpha, sac.SACConfig())
    np.testing.assert_allclose(g_logp, np.full(N, 0.2 / N), rtol=1e-5)
    lower = np.asarray(q[0]) < np.asarray(q[1])  # the gradient reaches only the smaller critic
    np.testing.assert_allclose(g_q, -np.stack([lower, ~lower]).astype(np.float32) / N, rtol=1e-6)


def test_alpha_loss_raises_alpha_while_the_entropy_is_below_target():
    logp = jnp.asarray([0.5, 1.5, 1.0])  # entropy -mean(logp) = -1
    h_target = sac.target_entropy(sac.SACConfig(target_entropy_scale=1.0), 2)  # -2
    assert h_target == -2.0
    log_alpha = jnp.float32(0.7)
    np.testing.assert_allclose(sac.alpha_loss(log_alpha, logp, h_target), -0.7 * (1.0 - 2.0), rtol=1e-6)
    g = jax.grad(sac.alpha_loss)(log_alpha, logp, h_target)
    np.testing.assert_allclose(g, -(1.0 - 2.0), rtol=1e-6)  # entropy -1 above target -2: lower α
    g_low = jax.grad(sac.alpha_loss)(log_alpha, logp + 2.0, h_target)  # entropy -3 below -2
    assert g_low < 0  # gradient descent raises log α


@pytest.mark.parametrize("tau", [0.0, 0.005, 1.0])
def test_polyak_equals_optax_incremental_update(tau):
    f, *_ = _batch(4)
    online, target = {"w": f(3, 4), "b": f(4)}, {"w": f(3, 4), "b": f(4)}
    new = sac.polyak(online, target, jnp.float32(tau))
    theirs = optax.incremental_update(online, target, tau)
    for k in online:
        np.testing.assert_allclose(new[k], theirs[k], rtol=1e-6)
        np.testing.assert_allclose(new[k], tau * np.asarray(online[k]) + (1 - tau) * np.asarray(target[k]), rtol=1e-5)


def test_gradient_step_composes_the_pieces_as_the_sac_equations_say():
    """On a hand-made minibatch: the critic loss stat is `critic_loss` onto
    `r·scale + γ(1 - terminated)(min Q̄(s', a') - α log π(a'|s'))` (truncation still
    bootstraps), the critics move, the target critics are `polyak(new critics, old
    targets, τ)`, and log α moves against its gradient."""
    cfg = sac.SACConfig(hidden=(8,), critic_hidden=(8,), reward_scale=2.0, gamma=0.9, tau=0.1, init_alpha=0.5)
    nets = sac.SACNetworks(
        actor=GaussianActor(D, cfg.hidden, cfg.activation, state_dependent_std=True),
        critic=QCritic(cfg.critic_hidden, cfg.activation), num_critics=K, act_dim=D,
        low=-jnp.ones(D), high=jnp.ones(D), obs_shape=(4,), normalize_obs=False,
    )  # fmt: skip
    k_a, k_c, k_t, k_step = jax.random.split(jax.random.key(0), 4)

    @jax.jit
    def start():
        obs1, act1 = jnp.zeros((1, 4)), jnp.zeros((1, D))
        params = sac.SACParams(
            nets.actor.init(k_a, obs1, 1), ensemble_init(nets.critic, k_c, K, obs1, act1, 1),
            ensemble_init(nets.critic, k_t, K, obs1, act1, 1), jnp.log(jnp.float32(0.5)), init_stats((4,)),
        )  # fmt: skip
        opt_a, opt_c, opt_al = sac.make_optimizers(cfg)
        return params, (opt_a.init(params.actor), opt_c.init(params.critic), opt_al.init(params.log_alpha))

    params, opt_state = start()
    rng = np.random.default_rng(0)
    g = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)  # noqa: E731
    term, trunc = jnp.asarray(rng.uniform(size=N) < 0.3), jnp.asarray(rng.uniform(size=N) < 0.3)
    mb = sac.Transition(g(N, 4), jnp.tanh(g(N, D)), g(N), g(N, 4), term, trunc)
    step = jax.jit(lambda p, o, mb, k: sac.gradient_step(nets, cfg, cfg, p, o, mb, k, sac.soft_q_target,
                                                         sac.sac_actor_loss))  # fmt: skip
    new, _, stats = step(params, opt_state, mb, k_step)

    @jax.jit
    def networks_at_the_minibatch(params):
        next_a, next_logp = sac.sample_action(nets, params.actor, mb.next_obs, jax.random.split(k_step)[0])
        next_q = sac.q_values(nets, params.target_critic, mb.next_obs, next_a)
        return next_q, next_logp, sac.q_values(nets, params.critic, mb.obs, mb.action)

    next_q, next_logp, q = (np.asarray(x) for x in networks_at_the_minibatch(params))
    y = 2.0 * np.asarray(mb.reward) + 0.9 * (1.0 - np.asarray(term)) * (next_q.min(0) - 0.5 * next_logp)
    np.testing.assert_allclose(stats["critic_loss"], 0.5 * ((q - y) ** 2).mean(-1).sum(), rtol=1e-5)
    np.testing.assert_allclose(stats["q"], q.mean(), rtol=1e-5)
    np.testing.assert_allclose(stats["alpha"], 0.5, rtol=1e-6)
    assert not _same(new.critic, params.critic) and not _same(new.actor, params.actor)
    expected_target = sac.polyak(new.critic, params.target_critic, cfg.tau)
    for got, want in zip(host_leaves(new.target_critic), host_leaves(expected_target), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # ∂L_α/∂log α = -(mean logp + H̄) = entropy - H̄: Adam's first step moves log α by -lr·sign.
    expected_dir = -np.sign(float(stats["entropy"]) - sac.target_entropy(cfg, D))
    np.testing.assert_allclose(float(new.log_alpha - params.log_alpha), expected_dir * cfg.alpha_lr, rtol=1e-3)
