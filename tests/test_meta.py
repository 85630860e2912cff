"""Meta-learned objectives: drift constraints (property test), DPO's closed form, LPO with
PPO-init equal to PPO, drift populations through PPO's config, and the ES meta-trainer
(toy convergence, exact resume, sharding, chunking, bad input)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlx.agents import ppo
from rlx.agents.meta import drifts
from rlx.train import make_train

from conftest import TINY_PPO


# -- drifts ---------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnums=0)
def _constraint_report(kind_index, params, ratio, adv, clip_eps, progress):
    """(min D(r, A), max |D(1, A)|, max |dD/dr(1, A)|) for one drift kind."""
    kind = drifts.KINDS[kind_index]

    def d(r, a):
        return drifts.drift(kind, params, r, a, clip_eps, progress)

    ones = jnp.ones_like(adv)
    grad = jax.vmap(jax.grad(lambda r, a: d(r[None], a[None])[0]))(ones, adv)
    return d(ratio, adv).min(), jnp.abs(d(ones, adv)).max(), jnp.abs(grad).max()


@settings(max_examples=60, deadline=None)
@given(
    kind_index=st.integers(0, len(drifts.KINDS) - 1),
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(0.0, 10.0),
    adv=st.lists(st.floats(-20, 20, allow_nan=False, width=32), min_size=16, max_size=16),
    progress=st.floats(0.0, 1.0),
    clip_eps=st.floats(0.05, 0.5),
)
def test_every_drift_is_nonnegative_and_flat_zero_at_ratio_one(kind_index, seed, scale, adv, progress, clip_eps):
    """D >= 0 everywhere, D(1, A) = 0 and dD/dr(1, A) = 0, for random network weights (and
    random DPO α, β), advantages, clip ε and training progress n/N."""
    kind = drifts.KINDS[kind_index]
    k_params, k_ratio = jax.random.split(jax.random.key(seed))
    params = drifts.init_params(kind, k_params, hidden=16, scale=scale)
    if kind == "dpo":
        params = {"alpha": jnp.float32(0.1 + scale), "beta": jnp.float32(0.05 + scale / 2)}
    a = jnp.asarray(adv, jnp.float32)
    ratio = jnp.exp(jax.random.normal(k_ratio, a.shape) * 1.5)
    low, at_one, slope_at_one = _constraint_report(kind_index, params, ratio, a, clip_eps, progress)
    assert float(low) >= 0.0, "drift went negative"
    assert float(at_one) == 0.0
    assert float(slope_at_one) == 0.0


def test_lpo_without_offset_would_have_a_gradient_at_ratio_one():
    """The test above can fail: the bare network f has a nonzero slope at r = 1; only the
    δ offset inside the ReLU makes D flat there."""
    params = drifts.init_params("lpo", jax.random.key(0), hidden=16)
    g = jax.grad(lambda r: drifts.lpo_network(params, drifts.features(r[None], jnp.ones(1)))[0])(1.0)
    assert abs(float(g)) > 1e-3


def test_dpo_matches_hand_computed_values():
    # A >= 0: (r-1)A - 2 tanh((r-1)A/2);  A < 0: log(r)A - 0.6 tanh(log(r)A/0.6), then ReLU.
    r = jnp.array([1.5, 3.0, 0.5, 0.5, 2.0, 1.0])
    a = jnp.array([2.0, 1.0, -1.0, 3.0, -0.5, -4.0])
    expected = [
        1.0 - 2.0 * math.tanh(0.5),  # 0.0757657
        2.0 - 2.0 * math.tanh(1.0),  # 0.4768116
        math.log(2.0) - 0.6 * math.tanh(math.log(2.0) / 0.6),  # -log(.5)·1
        0.0,  # (r-1)A = -1.5 < 0 -> x - 2 tanh(x/2) < 0 -> ReLU 0
        0.0,  # log(2)·(-0.5) < 0 -> negative -> 0
        0.0,
    ]
    np.testing.assert_allclose(np.asarray(drifts.drift("dpo", None, r, a)), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(float(expected[0]), 0.0757657, rtol=1e-5)


def test_lpo_ppo_init_with_zero_head_is_ppo_loss_and_gradient_exactly():
    rng = np.random.default_rng(0)
    log_ratio = jnp.asarray(rng.normal(scale=0.4, size=512), jnp.float32)
    adv = jnp.asarray(rng.normal(size=512), jnp.float32)
    for kind in ("lpo_ppo_init", "ta_lpo_ppo_init"):
        params = drifts.init_params(kind, jax.random.key(1), hidden=32)
        params = {"w1": params["w1"], "w2": jnp.zeros_like(params["w2"])}  # random body, zero head

        def lpo(lr):
            r = jnp.exp(lr)
            return -jnp.mean(r * adv - drifts.drift(kind, params, r, adv, 0.2, 0.3))

        def ref(lr):
            r = jnp.exp(lr)
            return -jnp.mean(r * adv - ppo.ppo_drift(r, adv, 0.2))

        assert float(lpo(log_ratio)) == float(ref(log_ratio))
        np.testing.assert_array_equal(np.asarray(jax.grad(lpo)(log_ratio)), np.asarray(jax.grad(ref)(log_ratio)))

    # The published sign bug (- ReLU(ppo drift)) is far from PPO: this test would catch it.
    r = jnp.exp(log_ratio)
    bug = jax.nn.relu(0.0 - ppo.ppo_drift(r, adv, 0.2) - drifts.DELTA)
    assert float(jnp.abs(bug - ppo.ppo_drift(r, adv, 0.2)).max()) > 0.1


def test_drift_params_are_validated_before_compiling():
    with pytest.raises(ValueError, match="no biases"):
        ppo.PPOConfig(drift="lpo", drift_params={"w1": jnp.zeros((8, 4)), "b1": jnp.zeros(4), "w2": jnp.zeros((4, 1))})
    with pytest.raises(ValueError, match="init_params"):
        ppo.PPOConfig(drift="lpo")
    with pytest.raises(ValueError, match=r"w1 \[..., 16, H\]"):
        ppo.PPOConfig(drift="ta_lpo", drift_params=drifts.init_params("lpo"))
    with pytest.raises(ValueError, match="must be None"):
        ppo.PPOConfig(drift_params={"alpha": 1.0})
    with pytest.raises(ValueError, match="accepted values"):
        ppo.PPOConfig(drift="clip")
    ppo.PPOConfig(drift="dpo")  # DPO's defaults need no parameters


@pytest.fixture(scope="module")
def lpo_tiny(cartpole):
    env, env_params = cartpole
    params = drifts.init_params("lpo_ppo_init", jax.random.key(0), hidden=8)
    cfg = ppo.PPOConfig(**TINY_PPO, drift="lpo_ppo_init", drift_params=params)
    return ppo.make_agent(env, cfg), cfg, env_params


def test_lpo_ppo_init_zero_head_trains_like_ppo(lpo_tiny, tiny_ppo):
    agent, cfg, env_params = lpo_tiny
    zero_head = cfg.replace(drift_params={**cfg.drift_params, "w2": jnp.zeros_like(cfg.drift_params["w2"])})
    key = jax.random.key(5)
    s_lpo, m_lpo = jax.jit(make_train(agent, cfg))(key, zero_head, env_params)
    p_agent, p_cfg, _ = tiny_ppo
    s_ppo, m_ppo = jax.jit(make_train(p_agent, p_cfg))(key, p_cfg, env_params)
    for k in m_ppo:  # bitwise: the whole training run is PPO's
        np.testing.assert_array_equal(np.asarray(m_lpo[k]), np.asarray(m_ppo[k]))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), s_lpo.params, s_ppo.params)


def test_a_population_of_drifts_vmaps_through_ppo_config(lpo_tiny):
    agent, cfg, env_params = lpo_tiny
    pop = jax.vmap(lambda k: drifts.init_params("lpo_ppo_init", k, hidden=8, scale=3.0))(
        jax.random.split(jax.random.key(1), 3)
    )
    cfgs = jax.vmap(lambda p: cfg.replace(drift_params=p))(pop)
    train = make_train(agent, cfg)
    _, metrics = jax.jit(jax.vmap(train, (None, 0, None)))(jax.random.key(2), cfgs, env_params)
    loss = np.asarray(metrics["policy_loss"])
    assert loss.shape == (3, agent.num_updates(cfg))
    assert np.isfinite(loss).all()
    assert not np.allclose(loss[0], loss[1])  # different drifts give different runs
