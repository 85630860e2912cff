"""PPO: losses against rlax, determinism, chunked/sharded/resumed runs equal to `train`,
NaN handling, and (slow) learning on CartPole and brax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

from rlx import distributions as D
from rlx import envs
from rlx.agents import ppo
from rlx.checkpoint import Checkpointer
from rlx.evaluation import evaluate
from rlx.logging import read_metrics
from rlx.population import make_population
from rlx.train import NonFiniteLossError, Runner, make_train


# -- losses -----------------------------------------------------------------------------
def test_drift_form_equals_rlax_clipped_surrogate_and_its_gradient():
    rng = np.random.default_rng(0)
    log_ratio = jnp.asarray(rng.normal(scale=0.4, size=256), jnp.float32)
    adv = jnp.asarray(rng.normal(size=256), jnp.float32)

    def ours(lr):
        r = jnp.exp(lr)
        return -jnp.mean(r * adv - ppo.ppo_drift(r, adv, 0.2))

    def ref(lr):
        return rlax.clipped_surrogate_pg_loss(jnp.exp(lr), adv, 0.2)

    np.testing.assert_allclose(float(ours(log_ratio)), float(ref(log_ratio)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.grad(ours)(log_ratio)), np.asarray(jax.grad(ref)(log_ratio)), atol=1e-7)


def test_ppo_drift_is_zero_with_zero_gradient_at_ratio_one():
    adv = jnp.linspace(-3, 3, 11)
    assert float(jnp.abs(ppo.ppo_drift(jnp.ones(11), adv, 0.2)).max()) == 0.0
    g = jax.vmap(jax.grad(lambda r, a: ppo.ppo_drift(r, a, 0.2)))(jnp.ones(11), adv)
    assert float(jnp.abs(g).max()) == 0.0


def test_distributions_against_closed_forms():
    logits = jnp.array([[1.0, 2.0, 0.5]])
    p = np.exp(np.asarray(logits)) / np.exp(np.asarray(logits)).sum()
    np.testing.assert_allclose(float(D.categorical_entropy(logits)[0]), -(p * np.log(p)).sum(), rtol=1e-6)
    np.testing.assert_allclose(float(D.categorical_log_prob(logits, jnp.array([1]))[0]), np.log(p[0, 1]), rtol=1e-6)
    from scipy import stats

    mean, log_std, x = jnp.array([0.3, -1.0]), jnp.array([0.1, -0.5]), jnp.array([1.0, -0.2])
    ref = stats.norm(np.asarray(mean), np.exp(np.asarray(log_std))).logpdf(np.asarray(x)).sum()
    np.testing.assert_allclose(float(D.gaussian_log_prob(mean, log_std, x)), ref, rtol=1e-5)
    ref_h = stats.norm(np.asarray(mean), np.exp(np.asarray(log_std))).entropy().sum()
    np.testing.assert_allclose(float(D.gaussian_entropy(log_std)), ref_h, rtol=1e-5)


# -- determinism and the drivers -----------------------------------------------------------
def test_same_seed_same_metrics_and_different_seed_differs(tiny_ppo):
    agent, cfg, params = tiny_ppo
    train = jax.jit(make_train(agent, cfg))
    m1 = train(jax.random.key(3), cfg, params)[1]
    m2 = train(jax.random.key(3), cfg, params)[1]
    m3 = train(jax.random.key(4), cfg, params)[1]
    for k in m1:
        np.testing.assert_array_equal(np.asarray(m1[k]), np.asarray(m2[k]))
    assert not np.array_equal(np.asarray(m1["loss"]), np.asarray(m3["loss"]))
    assert int(m1["env_steps"][-1]) == cfg.total_steps


@pytest.fixture(scope="module")
def solo_runs(tiny_ppo):
    """Each member of a 4-seed population, trained on its own with `train`."""
    agent, cfg, params = tiny_ppo
    pop = make_population(cfg, seeds=4, grid=None)
    train = jax.jit(make_train(agent, cfg))
    runs = [train(pop.keys[i], jax.tree.map(lambda x: x[i], pop.cfg), params) for i in range(4)]
    states = jax.tree.map(lambda *xs: jnp.stack(xs), *[r[0] for r in runs])
    metrics = {k: np.stack([np.asarray(r[1][k]) for r in runs]) for k in runs[0][1]}
    return pop, states, metrics


def _bits(x):
    return np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)


def assert_same(metrics_a, metrics_b, tree_a=None, tree_b=None):
    """Bitwise equality of metrics and (optionally) of two state pytrees, keys included."""
    for k in metrics_a:
        np.testing.assert_array_equal(metrics_a[k], metrics_b[k], err_msg=k)
    if tree_a is not None:
        leaves_a, leaves_b = jax.tree.leaves(tree_a), jax.tree.leaves(tree_b)
        assert len(leaves_a) == len(leaves_b)
        for a, b in zip(leaves_a, leaves_b):
            np.testing.assert_array_equal(_bits(a), _bits(b))


@pytest.mark.parametrize("devices", [1, 2, 4])
def test_chunked_population_map_mode_is_bitwise_equal_to_solo_train(tiny_ppo, solo_runs, devices):
    """Chunked (3 chunks of 2 updates), sharded over 1, 2 or 4 fake devices, equals
    each member's solo `train` run bit for bit."""
    agent, cfg, params = tiny_ppo
    pop, states, metrics = solo_runs
    res = Runner(agent, pop, params, None, chunk_updates=2, devices=devices, progress=False, population_mode="map").run()
    assert_same(metrics, res.metrics, states.params, res.state.params)


def test_population_on_8_devices_equals_1_device(tiny_ppo):
    agent, cfg, params = tiny_ppo
    pop = make_population(cfg, seeds=8)
    one = Runner(agent, pop, params, None, chunk_updates=3, devices=1, progress=False, population_mode="map").run()
    eight = Runner(agent, pop, params, None, chunk_updates=3, devices=8, progress=False, population_mode="map").run()
    assert_same(one.metrics, eight.metrics, one.state.params, eight.state.params)
    assert len(eight.state.params.actor["params"]["Dense_0"]["kernel"].sharding.device_set) == 8


def test_vmap_mode_chunked_equals_vmapped_train_and_is_close_to_solo(tiny_ppo, solo_runs):
    agent, cfg, params = tiny_ppo
    pop, states, metrics = solo_runs
    vm = jax.jit(jax.vmap(make_train(agent, cfg), (0, 0, None)))(pop.keys, pop.cfg, params)[1]
    res = Runner(agent, pop, params, None, chunk_updates=2, devices=1, progress=False, population_mode="vmap").run()
    assert_same({k: np.asarray(v) for k, v in vm.items()}, res.metrics)
    # Batching members lets XLA reorder some float reductions: equal to solo runs up to rounding.
    for k in metrics:
        np.testing.assert_allclose(res.metrics[k], metrics[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_resume_after_kill_equals_uninterrupted(tiny_ppo, tmp_path):
    agent, cfg, params = tiny_ppo
    pop = make_population(cfg, seeds=2)
    full = Runner(agent, pop, params, str(tmp_path / "full"), chunk_updates=2, devices=2, progress=False).run()

    class Killed(Exception):
        pass

    def kill_after_two_chunks(done, metrics):
        if done >= 4:
            raise Killed

    with pytest.raises(Killed):
        Runner(agent, pop, params, str(tmp_path / "cut"), chunk_updates=2, devices=2, progress=False,
               on_chunk=kill_after_two_chunks).run()  # fmt: skip
    assert Checkpointer(str(tmp_path / "cut" / "checkpoints")).latest_step() == 4
    with pytest.raises(FileExistsError, match="resume"):
        Runner(agent, pop, params, str(tmp_path / "cut"), chunk_updates=2, devices=2, progress=False).run()
    resumed = Runner(agent, pop, params, str(tmp_path / "cut"), chunk_updates=2, devices=2, progress=False).run(resume=True)
    assert resumed.first_update == 4
    assert_same({k: v[:, 4:] for k, v in full.metrics.items()}, resumed.metrics, full.state, resumed.state)
    a, b = read_metrics(str(tmp_path / "full" / "metrics.csv")), read_metrics(str(tmp_path / "cut" / "metrics.csv"))
    assert len(b["update_index"]) == 2 * 6
    np.testing.assert_array_equal(a["loss"], b["loss"])


def test_nan_loss_stops_with_update_index_and_keeps_last_good_checkpoint(tiny_ppo, tmp_path):
    agent, cfg, params = tiny_ppo

    def poisoned_update(state, c, p):  # the loss turns NaN from update 3 on
        state2, m = agent.update(state, c, p)
        return state2, dict(m, loss=jnp.where(state.update_step >= 3, jnp.nan, m["loss"]))

    bad = agent._replace(update=poisoned_update)
    pop = make_population(cfg, seeds=2)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at update 3 \(member 0, seed 0\); stopped, and the checkpoint at update 3 is intact"):
        Runner(bad, pop, params, str(tmp_path), chunk_updates=1, devices=1, progress=False).run()
    ckpt = Checkpointer(str(tmp_path / "checkpoints"))
    assert ckpt.latest_step() == 3
    like = Runner(agent, pop, params, None, devices=1, progress=False)._init_fn()(pop.keys, pop.cfg, params)
    state, meta = ckpt.restore(like)
    assert meta["updates"] == 3 and np.all(np.asarray(state.update_step) == 3)
    # and the run resumes from there with the healthy agent
    res = Runner(agent, pop, params, str(tmp_path), chunk_updates=1, devices=1, progress=False).run(resume=True)
    assert res.first_update == 3 and res.metrics["loss"].shape == (2, 3)


def test_diverging_learning_rate_is_caught_in_the_first_update(cartpole):
    env, params = cartpole
    cfg = ppo.PPOConfig(num_envs=4, num_steps=16, total_steps=64 * 4, num_minibatches=2, update_epochs=2, lr=1e30,
                        max_grad_norm=1e30, anneal_lr=False)  # fmt: skip
    pop = make_population(cfg, seeds=1)
    with pytest.raises(NonFiniteLossError, match=r"at update 0 \(member 0, seed 0\)"):
        Runner(ppo.make_agent(env, cfg), pop, params, None, chunk_updates=1, devices=1, progress=False).run()


# -- continuous actions and evaluation ----------------------------------------------------
@pytest.mark.parametrize("dist", ["gaussian", "tanh_gaussian"])
def test_continuous_ppo_runs_and_acts_in_bounds(dist):
    env, params = envs.make("gymnax/Pendulum-v1")
    cfg = ppo.PPOConfig(num_envs=4, num_steps=16, total_steps=64 * 3, num_minibatches=2, action_dist=dist,
                        normalize_obs=True, state_dependent_std=dist == "tanh_gaussian")  # fmt: skip
    agent = ppo.make_agent(env, cfg)
    state, metrics = jax.jit(make_train(agent, cfg))(jax.random.key(0), cfg, params)
    assert all(bool(jnp.all(jnp.isfinite(v))) for k, v in metrics.items() if k != "episode_return")
    assert float(state.params.obs_stats.count) > 64  # the normaliser saw the rollouts
    acts = jax.vmap(lambda k: agent.act(state.params, jnp.ones(3), k, cfg, False))(jax.random.split(jax.random.key(1), 256))
    assert float(jnp.abs(acts).max()) <= 2.0 and acts.shape == (256, 1)


def test_recomputed_segment_gae_equals_precomputed_before_the_critic_moves():
    """With one epoch of one minibatch the critic has not moved when GAE is recomputed, so
    brax-style in-minibatch GAE must give the same update as GAE computed after the rollout."""
    env, params = envs.make("gymnax/Pendulum-v1")
    base = dict(num_envs=4, num_steps=20, total_steps=80, update_epochs=1, num_minibatches=1,
                action_dist="tanh_gaussian", normalize_obs=True, stats_first=True, gae_segment=5)  # fmt: skip
    out = []
    for recompute in (False, True):
        cfg = ppo.PPOConfig(**base, recompute_gae=recompute)
        state, metrics = jax.jit(make_train(ppo.make_agent(env, cfg), cfg))(jax.random.key(3), cfg, params)
        out.append((state.params, metrics["value_loss"]))
    for a, b in zip(jax.tree.leaves(out[0]), jax.tree.leaves(out[1])):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-5)
    with pytest.raises(ValueError, match="recompute_gae = True needs gae_segment > 0"):
        ppo.PPOConfig(recompute_gae=True)


def test_action_dist_must_fit_the_action_space(cartpole):
    env, _ = cartpole
    with pytest.raises(ValueError, match=r"action_dist = 'gaussian' does not fit gymnax/CartPole-v1's discrete actions"):
        ppo.make_agent(env, ppo.PPOConfig(action_dist="gaussian"))


def test_evaluate_counts_cartpole_steps(tiny_ppo):
    agent, cfg, params = tiny_ppo
    env, _ = envs.make("gymnax/CartPole-v1")
    state = jax.jit(agent.init)(jax.random.key(0), cfg, params)
    out = jax.jit(lambda k: evaluate(agent, state.params, cfg, env, params, k, num_episodes=8))(jax.random.key(1))
    # CartPole pays 1 per step: the undiscounted return is the episode length.
    np.testing.assert_array_equal(np.asarray(out["return"]), np.asarray(out["length"]).astype(np.float32))
    assert bool(jnp.all(out["length"] >= 8)) and bool(jnp.all(out["length"] <= 500))


# -- learning (slow) ------------------------------------------------------------------------------
@pytest.mark.slow
def test_ppo_solves_cartpole_every_seed(cartpole):
    """Default config, 8 seeds in one program, 5e5 steps each: every seed's final return >= 475."""
    env, params = cartpole
    cfg = ppo.PPOConfig()
    agent = ppo.make_agent(env, cfg)
    pop = make_population(cfg, seeds=8)
    res = Runner(agent, pop, params, None, chunk_updates=cfg.num_updates, devices=2, progress=False).run()
    final = np.nanmean(res.metrics["episode_return"][:, -10:], 1)
    print("final returns per seed:", final)
    assert np.all(final >= 475), final


@pytest.mark.slow
def test_ppo_learns_brax_inverted_pendulum():
    """brax inverted_pendulum: mean deterministic evaluation return >= 900 within 1e6
    steps (brax.training's metric; few stochastic 1000-step training episodes finish, so
    the training-episode mean is biased low)."""
    env, params = envs.make("brax/inverted_pendulum", backend="generalized")
    cfg = ppo.brax_config(total_steps=1_000_000)
    agent = ppo.make_agent(env, cfg)
    pop = make_population(cfg, seeds=2)
    runner = Runner(agent, pop, params, None, chunk_updates=1, devices=2, progress=False,
                    eval_env=env, eval_episodes=8, eval_every=1)
    res = runner.run()
    evals = res.metrics["eval_return"]  # [P, U]: a value after every update
    print("evaluation returns per seed and update:", np.round(evals, 1))
    assert evals[:, -1].mean() >= 900, evals[:, -1]
