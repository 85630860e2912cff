"""Multi-objective PPO: the scalarised advantage against closed forms, the barrier
weights against autodiff, bad input, populations over preferences (member = solo run,
no recompiles), and (slow) recovery of the convex Deep Sea Treasure front."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import envs
from rlx.agents import ppo
from rlx.agents.morl import moppo
from rlx.pareto import simplex_lattice
from rlx.evaluation import evaluate
from rlx.returns import gae
from rlx.testing import count_compiles
from rlx.train import Runner, make_train

from conftest import TINY_PPO as TINY

@pytest.fixture(scope="module")
def tiny(deep_sea_treasure):
    env, params = deep_sea_treasure
    cfg = moppo.MOPPOConfig(weights=(0.5, 0.5), normalize_obs=True, **TINY)
    return moppo.make_agent(env, cfg), cfg, params


@pytest.fixture(scope="module")
def tiny_train(tiny):
    """One compiled solo `train`, shared by the tests below."""
    agent, cfg, _ = tiny
    return jax.jit(make_train(agent, cfg))


# -- the math -------------------------------------------------------------------------
def test_scalarised_vector_gae_equals_gae_of_scalarised_reward():
    """GAE is linear in (r, V): sum_j w_j A_j = GAE(w.r, w.V), truncation included."""
    rng = np.random.default_rng(0)
    T, B, d = 12, 3, 3
    r = jnp.asarray(rng.normal(size=(T, B, d)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(T, B, d)), jnp.float32)
    nv = jnp.asarray(rng.normal(size=(T, B, d)), jnp.float32)
    term = jnp.asarray(rng.random((T, B)) < 0.1)
    done = term | jnp.asarray(rng.random((T, B)) < 0.1)
    w = jnp.asarray([0.2, 0.5, 0.3])
    adv, ret = gae(r, v, nv, term[..., None], done[..., None], 0.97, 0.9)
    ref_adv, ref_ret = gae(r @ w, v @ w, nv @ w, term, done, 0.97, 0.9)
    np.testing.assert_allclose(np.asarray(adv @ w), np.asarray(ref_adv), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ret @ w), np.asarray(ref_ret), rtol=1e-5, atol=1e-5)
    for j in range(d):  # and each objective is plain GAE on its own reward
        a_j, _ = gae(r[..., j], v[..., j], nv[..., j], term, done, 0.97, 0.9)
        np.testing.assert_allclose(np.asarray(adv[..., j]), np.asarray(a_j), rtol=1e-6, atol=1e-6)


def test_barrier_weights_are_the_gradient_of_the_interior_point_objective():
    """w_eff ∝ d/dJ [w.J + (1/t) sum_j log(J_j - c_j)] (C-MORL Eq. 4), by autodiff."""
    w = jnp.asarray([1.0, 0.0, 0.0])
    c = jnp.asarray([-jnp.inf, 2.0, -5.0])
    t = 20.0
    j = jnp.asarray([3.0, 2.5, -4.0])

    def objective(j):
        active = jnp.isfinite(c)
        return w @ j + jnp.sum(jnp.where(active, jnp.log(jnp.where(active, j - c, 1.0)), 0.0)) / t

    grad = jax.grad(objective)(j)
    got = moppo.effective_weights(w, j, c, t)
    np.testing.assert_allclose(np.asarray(got), np.asarray(grad / grad.sum()), rtol=1e-6)
    # No constraint: the preference itself.
    none = jnp.full(3, -jnp.inf)
    np.testing.assert_allclose(np.asarray(moppo.effective_weights(w, j, none, t)), np.asarray(w))
    # Infeasible (J below the level): finite, and the violated constraint dominates.
    bad = moppo.effective_weights(w, jnp.asarray([3.0, 1.0, -4.0]), c, t)
    assert np.all(np.isfinite(np.asarray(bad))) and float(bad[1]) > 0.9


# -- bad input --------------------------------------------------------------------------
def test_bad_preferences_and_shapes_raise_before_compiling(deep_sea_treasure):
    env, _ = deep_sea_treasure
    with pytest.raises(ValueError, match="weights is required"):
        moppo.MOPPOConfig(**TINY)
    with pytest.raises(ValueError, match="sum to 1"):
        moppo.MOPPOConfig(weights=(0.5, 0.6), **TINY)
    with pytest.raises(ValueError, match="non-negative"):
        moppo.MOPPOConfig(weights=(1.5, -0.5), **TINY)
    with pytest.raises(ValueError, match="2 objectives"):
        moppo.make_agent(env, moppo.MOPPOConfig(weights=(0.2, 0.3, 0.5), **TINY))
    with pytest.raises(ValueError, match="reward_scale"):
        moppo.make_agent(env, moppo.MOPPOConfig(weights=(0.5, 0.5), reward_scale=(1.0, 1.0, 1.0), **TINY))
    with pytest.raises(ValueError, match="barrier_threshold"):
        moppo.MOPPOConfig(weights=(0.5, 0.5), barrier_threshold=(np.nan, 0.0), **TINY)
    with pytest.raises(ValueError, match="reward_scale"):
        moppo.MOPPOConfig(weights=(0.5, 0.5), reward_scale=(1.0, -1.0), **TINY)
    cartpole, _ = envs.make("gymnax/CartPole-v1")
    with pytest.raises(ValueError, match="vector-reward env"):
        moppo.make_agent(cartpole, moppo.MOPPOConfig(weights=(1.0,), **TINY))
    # Plain PPO refuses vector rewards without a scalarisation (and vice versa).
    with pytest.raises(ValueError, match="scalarize"):
        ppo.make_agent(env, ppo.PPOConfig(**TINY))
    with pytest.raises(ValueError, match="scalarize"):
        ppo.make_agent(cartpole, ppo.PPOConfig(**TINY), scalarize=lambda a, c: a)
    with pytest.raises(ValueError, match=r"\[M, d\]"):
        moppo.preference_population(moppo.MOPPOConfig(weights=(0.5, 0.5), **TINY), [0.5, 0.5])


# -- populations ------------------------------------------------------------------------
def test_vector_critic_shapes_and_metrics(tiny, tiny_train):
    agent, cfg, params = tiny
    pop = moppo.preference_population(cfg, [[0.5, 0.5]])
    state, metrics = tiny_train(pop.keys[0], jax.tree.map(lambda x: x[0], pop.cfg), params)
    head = state.params.critic["params"]["Dense_0"]["kernel"]  # one value head per objective
    assert head.shape[-1] == 2
    assert metrics["episode_return"].shape == (cfg.num_updates, 2)
    assert np.all(np.isfinite(np.asarray(metrics["loss"])))
    assert int(metrics["env_steps"][-1]) == cfg.total_steps


def test_population_member_equals_solo_run_and_weights_never_recompile(tiny, tiny_train):
    """A 4-member preference population, sharded over 2 devices (`map` mode), is
    bitwise equal to each member trained alone; new weights reuse the compiled program."""
    agent, cfg, params = tiny
    weights = simplex_lattice(2, divisions=3)  # 4 preferences
    pop = moppo.preference_population(cfg, weights, seeds=1)
    result = Runner(agent, pop, params, None, devices=2, progress=False, population_mode="map").run()
    train = tiny_train
    for i in (0, 3):
        c_i = jax.tree.map(lambda x: x[i], pop.cfg)
        state, metrics = train(pop.keys[i], c_i, params)
        np.testing.assert_array_equal(np.asarray(metrics["loss"]), result.metrics["loss"][i])
        np.testing.assert_array_equal(
            np.asarray(jax.tree.leaves(state.params)[0]), np.asarray(jax.tree.leaves(result.state.params)[0][i])
        )
    c_0 = jax.tree.map(lambda x: x[0], pop.cfg)
    with count_compiles() as compiles:
        train(pop.keys[0], c_0.replace(weights=np.asarray([0.9, 0.1], np.float32)), params)
    assert not compiles
    # Different preferences learn different policies from the same seed.
    assert not np.array_equal(result.metrics["loss"][0], result.metrics["loss"][3])


def test_barrier_agent_runs_and_reports_its_weights(deep_sea_treasure):
    env, params = deep_sea_treasure
    cfg = moppo.MOPPOConfig(
        weights=(1.0, 0.0), barrier_threshold=(-np.inf, -3.0), normalize_obs=True, **TINY
    )
    agent = moppo.make_agent(env, cfg)
    _, metrics = jax.jit(make_train(agent, cfg))(jax.random.key(1), cfg, params)
    w = np.asarray(metrics["barrier_weights"])
    assert w.shape == (cfg.num_updates, 2) and np.all(np.isfinite(w))
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
    assert np.all(w[:, 1] > 0)  # the constrained objective always carries weight
    assert np.asarray(metrics["value_estimate"]).shape == (cfg.num_updates, 2)


# -- learning ---------------------------------------------------------------------------
DST_LEARN = dict(
    num_envs=16, num_steps=64, num_minibatches=4, update_epochs=4, lr=1e-3, gamma=0.99,
    ent_coef=0.01, normalize_obs=True, reward_scale=(0.1, 1.0),
)  # fmt: skip


def _front_hits(returns, front, tol=0.05):
    """Indices of true front points matched (within tol) by some row of `returns: [P, d]`."""
    dist = np.abs(returns[:, None, :] - front[None, :, :]).max(-1)
    return sorted({int(j) for j in np.argwhere(dist < tol)[:, 1]})


def _train_front(env, params, weights, updates, seed=0):
    cfg = moppo.MOPPOConfig(weights=(0.5, 0.5), total_steps=16 * 64 * updates, **DST_LEARN)
    agent = moppo.make_agent(env, cfg)
    pop = moppo.preference_population(cfg, weights, seeds=[seed])
    result = Runner(agent, pop, params, None, progress=False).run()
    spec = env.mo_spec
    ev = jax.jit(
        jax.vmap(lambda p, c, k: evaluate(agent, p, c, env, params, k, 1, gamma=spec.gamma)["discounted_return"][0])
    )
    keys = jax.random.split(jax.random.key(0), len(weights))
    return np.asarray(ev(agent.policy_params(result.state), pop.cfg, keys), np.float64)


def test_small_population_finds_both_ends_of_the_convex_front(deep_sea_treasure):
    env, params = deep_sea_treasure
    front = env.pareto_front(env.mo_spec.gamma)
    returns = _train_front(env, params, np.array([[0.0, 1.0], [0.5, 0.5]]), updates=40)
    hits = _front_hits(returns, front)
    assert 0 in hits  # w = (0, 1): the nearest treasure, one step away
    assert len(hits) == 2, (returns, hits)  # w = (0.5, 0.5): another Pareto-optimal treasure


@pytest.mark.slow
def test_101_preferences_recover_at_least_9_of_10_convex_dst_points(deep_sea_treasure):
    env, params = deep_sea_treasure
    front = env.pareto_front(env.mo_spec.gamma)
    returns = _train_front(env, params, simplex_lattice(2, divisions=100), updates=150)
    hits = _front_hits(returns, front)
    print("recovered", len(hits), "of 10:", hits)
    assert len(hits) >= 9, hits


def test_cli_run_with_vector_returns_plots_weighted_train_and_eval_curves(tmp_path, capsys):
    import json
    import os

    from rlx import cli
    from rlx.logging import read_metrics

    out = str(tmp_path / "mo")
    argv = ["train", "moppo", "--env", "rlx/deep-sea-treasure", "--weights", "0.5,0.5", "--seeds", "2",
            "--num-envs", "4", "--num-steps", "16", "--total-steps", "256", "--eval-every", "2", "--no-progress",
            "--out", out]  # fmt: skip
    assert cli.main(argv) == 0
    m = read_metrics(os.path.join(out, "metrics.csv"))
    assert m["episode_return"].shape[1] == 2 and m["eval_return"].shape[1] == 2  # [rows, d]
    assert np.isfinite(m["eval_return"]).any(1).sum() >= 2
    assert os.path.getsize(os.path.join(out, "eval_curve.png")) > 0
    assert np.asarray(json.load(open(os.path.join(out, "summary.json")))["eval_return"]).shape == (2, 2)
