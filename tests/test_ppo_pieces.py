"""PPO taken apart: each piece is importable and replaceable by passing a function.

An injected piece that equals the default gives the default run bit for bit (so the
plumbing adds nothing); a different piece reaches the update (so it is really used);
the loss piece alone matches rlax."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import rlax

from rlx.agents import ppo
from rlx.train import make_train

TINY = dict(num_envs=4, num_steps=16, total_steps=4 * 16 * 2, num_minibatches=2, update_epochs=1)


def _run(env, params, cfg, **pieces):
    agent = ppo.make_agent(env, cfg, **pieces)
    return jax.jit(make_train(agent, cfg))(jax.random.key(0), cfg, params)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_injected_default_pieces_give_the_default_run_bitwise(cartpole):
    env, params = cartpole
    cfg = ppo.PPOConfig(**TINY)
    base_state, base = _run(env, params, cfg)
    state, metrics = _run(
        env, params, cfg,
        advantages=functools.partial(ppo.gae_advantages, segment=0),
        drift=lambda ratio, adv, c, progress: ppo.ppo_drift(ratio, adv, c.clip_eps),
        minibatching=ppo.sample_minibatching(cfg.num_minibatches),
    )  # fmt: skip
    for a, b in zip(_leaves(base_state.params), _leaves(state.params)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(base["loss"]), np.asarray(metrics["loss"]))


def test_a_custom_advantage_reaches_the_policy(cartpole):
    """Zero advantages and no entropy bonus leave the actor exactly where it started,
    while the critic still learns: the injected piece is what the policy loss sees."""
    env, params = cartpole
    cfg = ppo.PPOConfig(**TINY, ent_coef=0.0)

    def zero_advantages(traj, values, final_values, c):
        adv, targets = ppo.gae_advantages(traj, values, final_values, c)
        return jnp.zeros_like(adv), targets

    agent = ppo.make_agent(env, cfg, advantages=zero_advantages)
    start = jax.jit(agent.init)(jax.random.key(0), cfg, params)
    state, _ = jax.jit(make_train(agent, cfg))(jax.random.key(0), cfg, params)
    for a, b in zip(_leaves(start.params.actor), _leaves(state.params.actor)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(_leaves(start.params.critic), _leaves(state.params.critic)))
    default_state, _ = _run(env, params, cfg)
    assert any(not np.array_equal(a, b) for a, b in zip(_leaves(start.params.actor), _leaves(default_state.params.actor)))


def test_a_custom_drift_changes_the_update(cartpole):
    env, params = cartpole
    cfg = ppo.PPOConfig(**{**TINY, "update_epochs": 4, "lr": 1e-2})  # large steps: ratios leave the clip range
    calls = []

    def no_drift(ratio, adv, c, progress):  # unclipped policy gradient
        calls.append(progress)
        return jnp.zeros_like(ratio)

    _, base = _run(env, params, cfg)
    _, free = _run(env, params, cfg, drift=no_drift)
    assert calls, "the injected drift was never traced"
    assert not np.array_equal(np.asarray(base["policy_loss"]), np.asarray(free["policy_loss"]))
    assert float(np.max(base["clip_frac"])) > 0  # the clip was active, so replacing it must matter


def test_the_loss_piece_alone_equals_rlax(cartpole):
    """`ppo_loss` on a hand-made minibatch: its policy loss is rlax's clipped surrogate,
    its entropy the categorical entropy, its value loss the clipped-value form."""
    env, params = cartpole
    cfg = ppo.PPOConfig(**TINY, normalize_advantages=False)
    agent = ppo.make_agent(env, cfg)
    state = jax.jit(agent.init)(jax.random.key(1), cfg, params)
    nets = ppo.make_networks(env, cfg)
    rng = np.random.default_rng(0)
    n = 64
    obs = jnp.asarray(rng.normal(size=(n, 4)), jnp.float32)
    action = jnp.asarray(rng.integers(0, 2, n), jnp.int32)
    logits = nets.actor.apply(state.params.actor, obs, 1)
    logp_now = jax.nn.log_softmax(logits)[jnp.arange(n), action]
    mb = dict(obs=obs, action=action, logp=logp_now + jnp.asarray(rng.normal(scale=0.3, size=n), jnp.float32),
              adv=jnp.asarray(rng.normal(size=n), jnp.float32), target=jnp.asarray(rng.normal(size=n), jnp.float32),
              value=jnp.asarray(rng.normal(size=n), jnp.float32), noise=jnp.zeros(n))  # fmt: skip
    ac = (state.params.actor, state.params.critic)
    _, stats = ppo.ppo_loss(nets, cfg, cfg, state.params, ac, mb, ppo.ppo_drift_fn, jnp.float32(0))
    ratio = jnp.exp(logp_now - mb["logp"])
    expected = rlax.clipped_surrogate_pg_loss(ratio, mb["adv"], cfg.clip_eps)
    np.testing.assert_allclose(float(stats["policy_loss"]), float(expected), rtol=1e-5)
    p = jax.nn.softmax(logits)
    np.testing.assert_allclose(float(stats["entropy"]), float(-(p * jnp.log(p)).sum(-1).mean()), rtol=1e-5)
    v = nets.critic.apply(state.params.critic, obs, 1)
    clipped = mb["value"] + jnp.clip(v - mb["value"], -cfg.vf_clip_eps, cfg.vf_clip_eps)
    vl = jnp.maximum((v - mb["target"]) ** 2, (clipped - mb["target"]) ** 2).mean() * 0.5
    np.testing.assert_allclose(float(stats["value_loss"]), float(vl), rtol=1e-5)
