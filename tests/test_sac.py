"""SAC: determinism (solo = population), resume, truncation handling, bad input, learning."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from rlx import envs, replay
from rlx.agents import sac
from rlx.population import make_population
from rlx.logging import MetricsCSV, read_metrics
from rlx.train import Runner, make_train
from rlx.testing import count_compiles, raises_before_compile, train_and_evaluate

# Tiny: 64 warm-up steps, then 16 updates of 2 envs x 2 steps with 2 gradient steps each;
# the buffer (96) is smaller than the run (128 transitions), so it wraps around.
TINY = dict(
    num_envs=2, rollout_steps=2, utd=0.5, learning_starts=64, total_steps=128, buffer_size=96,
    batch_size=32, hidden=(16, 16), critic_hidden=(16, 16), normalize_obs=True,
)  # fmt: skip
UPDATES = 16
CHUNK = 4




@pytest.fixture(scope="module")
def setup():
    env, params = envs.make("gymnax/Pendulum-v1")
    cfg = sac.SACConfig(**TINY)
    agent = sac.make_agent(env, cfg)
    assert agent.num_updates(cfg) == UPDATES
    train = jax.jit(make_train(agent, cfg))
    return env, params, cfg, agent, train


@pytest.fixture(scope="module")
def solo(setup):
    _, params, cfg, _, train = setup
    return [jax.device_get(train(jax.random.key(s), cfg, params)) for s in (0, 1)]


@pytest.fixture(scope="module")
def resumed(setup, tmp_path_factory):
    """A 2-seed Runner (map mode) interrupted after two chunks (KeyboardInterrupt while
    logging the third), then `run(resume=True)` on the same Runner (same compiled chunk)."""
    _, params, cfg, agent, _ = setup
    out = str(tmp_path_factory.mktemp("sac_run"))
    runner = Runner(agent, make_population(cfg, seeds=2), params, out, chunk_updates=CHUNK, progress=False, population_mode="map")
    original = MetricsCSV.append
    calls = []

    def interrupting_append(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    MetricsCSV.append = interrupting_append
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run()
    finally:
        MetricsCSV.append = original
    return out, jax.device_get(runner.run(resume=True))


def leaves_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resumed_population_equals_uninterrupted_solo_runs_bitwise(solo, resumed):
    """Runner(population_mode="map") runs each member with exactly a solo run's program,
    so a population interrupted and resumed from its checkpoint (replay buffer, env
    states, optimiser, keys, normaliser) ends bitwise equal to uninterrupted solo runs."""
    out, result = resumed
    assert result.first_update == 2 * CHUNK
    logged = read_metrics(os.path.join(out, "metrics.csv"))
    for m, (state, metrics) in enumerate(solo):
        leaves_equal(jax.tree.map(lambda x: x[m], result.state.buffer), state.buffer)
        leaves_equal(jax.tree.map(lambda x: x[m], result.state), state)
        for name, values in metrics.items():
            np.testing.assert_array_equal(result.metrics[name][m], values[2 * CHUNK :], err_msg=name)
        # The CSV holds every update once, the ones before the interruption included.
        rows = logged["member"] == m
        np.testing.assert_array_equal(logged["update_index"][rows], np.arange(UPDATES))
        np.testing.assert_allclose(logged["critic_loss"][rows], metrics["critic_loss"], rtol=1e-5)


@pytest.mark.slow  # test_ppo.py checks vmap mode against solo runs in the default suite
def test_vmapped_population_is_close_to_solo_runs(setup, solo):
    """Plain vmap batches members into one program; on CPU XLA may round some reductions
    differently per batch shape, so this is allclose, not bitwise."""
    _, params, cfg, agent, _ = setup
    pop = make_population(cfg, seeds=2)
    _, metrics = jax.jit(jax.vmap(make_train(agent, cfg), (0, 0, None)))(pop.keys, pop.cfg, params)
    for m, (_, solo_metrics) in enumerate(solo):
        for name in ("critic_loss", "actor_loss", "alpha", "episode_return", "q"):
            np.testing.assert_allclose(np.asarray(metrics[name][m]), solo_metrics[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_changing_traced_values_does_not_recompile(setup, solo):
    _, params, cfg, _, train = setup
    with count_compiles() as compiles:
        _, metrics = train(jax.random.key(0), cfg.replace(lr=1e-3, tau=0.01, gamma=0.9, reward_scale=0.5), params)
    assert compiles == []
    assert not np.array_equal(np.asarray(metrics["critic_loss"]), solo[0][1]["critic_loss"])


def test_warmup_fills_buffer_and_truncation_keeps_final_obs(setup):
    """Pendulum only truncates (200 steps). After 2 envs x 200 random warm-up steps the
    buffer holds every transition in order; a truncated step stores the true final
    observation as next_obs (for the bootstrap), not the reset observation."""
    env, params, _, _, _ = setup
    cfg = sac.SACConfig(**{**TINY, "learning_starts": 400, "total_steps": 404, "buffer_size": 512})
    state = jax.jit(sac.make_agent(env, cfg).init)(jax.random.key(3), cfg, params)
    buf = jax.device_get(state.buffer)
    assert int(buf.size) == 400 and int(state.env_steps) == 400
    d = buf.data
    assert not d.terminated[:400].any()
    trunc = np.flatnonzero(d.truncated[:400])
    assert trunc.tolist() == [398, 399]  # step 200 of each env (rows are time-major, 2 envs)
    nxt = d.obs[2:400]  # the obs each env saw one step later
    same = np.all(d.next_obs[:398] == nxt, axis=-1)
    assert same.all()  # no episode ended before the last step
    # The final obs is a genuine successor: it is cos/sin-consistent and not the new episode's start.
    final = d.next_obs[398:400]
    np.testing.assert_allclose(final[:, 0] ** 2 + final[:, 1] ** 2, 1.0, atol=1e-5)
    assert not np.allclose(final, np.asarray(state.obs))
    # Warm-up actions are uniform in [-1, 1] (tanh space) and the normaliser saw the warm-up.
    assert d.action[:400].min() < -0.9 and d.action[:400].max() > 0.9
    assert float(state.params.obs_stats.count) > 399
    assert sac.buffer_bytes(env, cfg) == replay.nbytes(sac.example_transition(env), 512) == 512 * 34


def test_act_respects_the_action_box(setup, solo):
    env, params, cfg, agent, _ = setup
    state = solo[0][0]
    obs = np.zeros(env.observation_space(params).shape, np.float32)
    a = agent.act(agent.policy_params(state), obs, jax.random.key(0), cfg, False)
    assert a.shape == (1,) and -2.0 <= float(a[0]) <= 2.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(buffer_size=100, batch_size=256), "buffer_size"),
        (dict(tau=-0.1), "tau"),
        (dict(tau=1.5), "tau"),
        (dict(utd=0.3), "utd"),
        (dict(num_envs=3, learning_starts=1000), "learning_starts"),
        (dict(total_steps=500, learning_starts=1000), "total_steps"),
    ],
)
def test_bad_config_raises_before_compile(kwargs, match):
    with raises_before_compile(match=match):
        sac.SACConfig(**kwargs)


def test_sac_on_discrete_env_raises_before_compile():
    env, _ = envs.make("gymnax/CartPole-v1")
    env.observation_space(env.default_params), env.action_space(env.default_params)  # gymnax's own tiny jits
    with raises_before_compile(match="continuous"):
        sac.make_agent(env, sac.SACConfig())


@pytest.mark.slow
def test_mountain_car_continuous_runs():
    env, params = envs.make("gymnax/MountainCarContinuous-v0")
    cfg = sac.SACConfig(**{**TINY, "normalize_obs": False})
    _, metrics = jax.jit(make_train(sac.make_agent(env, cfg), cfg))(jax.random.key(0), cfg, params)
    assert np.all(np.isfinite(np.asarray(metrics["critic_loss"])))
    assert int(metrics["env_steps"][-1]) == 128


# -- slow: learning ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(1500)  # 526 s alone on 2 cores; beside other slow tests it passed 600
def test_sac_learns_pendulum_8_seeds():
    """Mean over 8 seeds of the final episode return >= -250 within 2e4 env steps."""
    env, params = envs.make("gymnax/Pendulum-v1")
    cfg = sac.SACConfig(total_steps=20_000)
    result, ev = train_and_evaluate(sac.make_agent(env, cfg), cfg, env, params, seeds=8, episodes=16, eval_seed=7)
    final = result.metrics["episode_return"][:, -1]
    print(f"SAC Pendulum final train returns {np.round(final, 1)}, greedy eval {np.round(ev, 1)}")
    assert float(np.mean(final)) >= -250


@pytest.mark.slow
def test_sac_runs_on_brax_ant_spring():
    env, params = envs.make("brax/ant", backend="spring")
    cfg = sac.SACConfig(**{**TINY, "total_steps": 80})
    _, metrics = jax.jit(make_train(sac.make_agent(env, cfg), cfg))(jax.random.key(0), cfg, params)
    assert np.all(np.isfinite(np.asarray(metrics["critic_loss"])))


@pytest.mark.slow
def test_sac_learns_brax_inverted_pendulum():
    """brax preset, generalized backend, 2 vmapped seeds, 1e5 env steps: the deterministic
    policy returns >= 900 on each seed (about 6 minutes on 2 CPU cores). The training
    episode_return is no test here: each of the 128 envs takes only 781 steps, so no
    1000-step episode can end during training."""
    env, params = envs.make("brax/inverted_pendulum", backend="generalized")
    cfg = sac.brax_config(total_steps=100_096)
    _, ev = train_and_evaluate(sac.make_agent(env, cfg), cfg, env, params, seeds=2, episodes=8)
    print(f"SAC brax inverted_pendulum: deterministic eval {np.round(ev, 1)}")
    assert np.all(ev >= 900)
