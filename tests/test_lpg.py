"""LPG / TA-LPG on procedural grid worlds and GROOVE: exact optima against brute force,
full-lifetime inner runs, batched levels equal to single ones, regret by its definition,
bad levels and bad configs."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.agents.meta import groove, lpg
from rlx.envs import meta_grid as mg

ENV = mg.MetaGrid(max_size=3, max_objects=2)
META = dict(meta_hidden=8, phi_hidden=4, y_bins=4)
TINY = dict(num_envs=2, num_steps=5, max_lifetime=40, **META)


def _cfg(temporal=False, rule="lpg", key=1, **kw):
    params = lpg.init_params(jax.random.key(key), temporal, hidden=8, y_bins=4, phi_hidden=4, scale=2.0)
    params["pi_w"] = jax.random.normal(jax.random.key(key + 7), params["pi_w"].shape)  # a non-trivial rule
    # lifetime as an int32 array: overriding it later reuses the compiled program.
    kw = {"lifetime": jnp.int32(0), **kw}
    return lpg.LPGConfig(**{**TINY, **kw}, temporal=temporal, update_rule=rule, lpg_params=params)


@pytest.fixture(scope="module")
def ta_train():
    cfg = _cfg(temporal=True)
    return cfg, jax.jit(lpg.make_train(ENV, cfg))


LEVELS = mg.sample_levels(jax.random.key(3), mg.GridDistribution(min_size=2, max_size=3, max_objects=2, walls=2,
                                                                 episode_length=(5, 30), lifetime=(3, 30)), 3)


# -- exact optimum -------------------------------------------------------------------------------
def brute_force(level: mg.Level, max_size: int, horizon: int) -> float:
    """Expectimax over the env's rules, written out in plain Python (no tables)."""
    M, K = max_size, len(level.obj_pos)
    size, walls, start = int(level.size), np.asarray(level.walls), int(level.start)
    pos_k, rew, term, resp = (np.asarray(a) for a in (level.obj_pos, level.obj_reward, level.obj_term, level.obj_respawn))
    n = int(level.num_objects)

    def move(p, a):
        r, c = divmod(p, M)
        dr, dc = mg.MOVES[a]
        r2, c2 = r + dr, c + dc
        if not (0 <= r2 < size and 0 <= c2 < size) or walls[r2 * M + c2]:
            return p
        return r2 * M + c2

    @functools.lru_cache(maxsize=None)
    def value(p, present, h):
        if h == 0:
            return 0.0
        best = -np.inf
        for a in range(5):
            q = move(p, a)
            taken = tuple(present[k] and pos_k[k] == q for k in range(K))
            r = sum(rew[k] for k in range(K) if taken[k])
            stop = sum(term[k] for k in range(K) if taken[k])
            future = 0.0
            for nxt in itertools.product((False, True), repeat=K):
                pr = 1.0
                for k in range(K):
                    p1 = 0.0 if taken[k] else (1.0 if present[k] else (resp[k] if k < n else 0.0))
                    pr *= p1 if nxt[k] else 1.0 - p1
                if pr > 0:
                    future += pr * value(q, nxt, h - 1)
            best = max(best, r + (1.0 - stop) * future)
        return best

    return value(start, tuple(k < n for k in range(K)), horizon)


def test_value_iteration_optimum_equals_brute_force():
    dist = mg.GridDistribution(min_size=2, max_size=3, max_objects=2, walls=2, episode_length=(3, 7),
                               term_prob=(0.2, 1.0), respawn_prob=(0.05, 0.9))  # fmt: skip
    levels = mg.sample_levels(jax.random.key(0), dist, 6)
    opt = jax.jit(jax.vmap(lambda l: mg.optimal_return(ENV, l)))(levels)
    for i in range(6):
        lv = jax.tree.map(lambda x: x[i], levels)
        ref = brute_force(lv, 3, int(lv.max_steps_in_episode))
        np.testing.assert_allclose(float(opt[i]), ref, rtol=1e-5, atol=1e-6)
    assert len(np.unique(np.round(np.asarray(opt), 4))) > 3  # the levels really differ


def test_exact_policy_return_matches_rollouts_of_the_env():
    """policy_return agrees with Monte Carlo episodes of env.step under the same policy."""
    lv = jax.tree.map(lambda x: x[0], LEVELS)
    probs = jax.nn.softmax(jax.random.normal(jax.random.key(1), (ENV.num_states, 5)) * 2)
    exact = float(mg.policy_return(ENV, lv, probs))

    def episode(key):
        obs, s = ENV.reset(key, lv)

        def step(c, k):
            obs, s, total, alive = c
            ka, ke = jax.random.split(k)
            a = jax.random.categorical(ka, jnp.log(probs[ENV.state_index(s.pos, s.present)]))
            obs, s, r, term, trunc, _ = ENV.step(ke, s, a, lv)
            return (obs, s, total + alive * r, alive & ~(term | trunc)), None

        (_, _, total, _), _ = jax.lax.scan(step, (obs, s, 0.0, True), jax.random.split(key, 40))
        return total

    mc = jax.jit(jax.vmap(episode))(jax.random.split(jax.random.key(2), 4000))
    assert abs(float(mc.mean()) - exact) < 4 * float(mc.std()) / np.sqrt(4000) + 1e-6


# -- the inner run ----------------------------------------------------------------------------------
def test_inner_run_lasts_the_full_lifetime_and_equals_that_many_updates(ta_train):
    cfg, train = ta_train
    lv = jax.tree.map(lambda x: x[0], LEVELS).replace(lifetime=jnp.int32(23))
    state, m = train(jax.random.key(0), cfg, lv)
    assert int(state.num_updates) == 23 and float(m["num_updates"][0]) == 23
    # The same agent stepped by hand 23 times (not 5, the published truncation).
    s = lpg.init_agent(jax.random.key(0), ENV, cfg, lv)
    step = jax.jit(lambda s: lpg.update(s, ENV, cfg, lv, jnp.int32(23))[0])
    for _ in range(23):
        s = step(s)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6),
                 s.params, state.params)  # fmt: skip
    # cfg.lifetime overrides the level's; a longer lifetime really runs longer.
    state2, _ = train(jax.random.key(0), cfg.replace(lifetime=jnp.int32(31)), lv)
    assert int(state2.num_updates) == 31


def test_a_batch_of_levels_equals_the_levels_one_by_one(ta_train):
    cfg, train = ta_train
    keys = jax.random.split(jax.random.key(4), 3)
    batched = jax.jit(jax.vmap(train, (0, None, 0)))(keys, cfg, LEVELS)[1]
    for i in range(3):
        single = train(keys[i], cfg, jax.tree.map(lambda x: x[i], LEVELS))[1]
        for k in single:
            np.testing.assert_allclose(np.asarray(batched[k][i]), np.asarray(single[k]), rtol=1e-5, atol=1e-6, err_msg=k)
    assert len(np.unique(np.asarray(batched["num_updates"]))) == 3  # different lifetimes in one batch


def test_temporal_inputs_change_the_update(ta_train):
    """TA-LPG sees n/N and log N / log 1000: the same level at another lifetime gives other updates."""
    cfg, _ = ta_train
    lv = jax.tree.map(lambda x: x[0], LEVELS)
    s = lpg.init_agent(jax.random.key(0), ENV, cfg, lv)
    step = jax.jit(lambda s, c, n: lpg.update(s, ENV, c, lv, n)[0].params)
    a, b = step(s, cfg, jnp.int32(10)), step(s, cfg, jnp.int32(200))
    assert float(jnp.abs(a["pi"][0][0] - b["pi"][0][0]).max()) > 0
    # time_inputs = 0 zeroes both TA inputs: the same network then acts as LPG, blind to n and N.
    off = cfg.replace(time_inputs=0.0)
    a, b = step(s, off, jnp.int32(10)), step(s, off, jnp.int32(200))
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


# -- regret and bad levels ----------------------------------------------------------------------------
CORRIDOR = mg.make_level(["S0", "##"], [(1.0, 1.0, 0.0)], max_size=3, max_objects=2, max_steps=6, lifetime=4)


@pytest.fixture(scope="module")
def antagonist():
    a2c = lpg.LPGConfig(**TINY, update_rule="a2c", lr_pi=5.0, lr_y=1.0)
    return jax.jit(groove.make_antagonist(ENV, a2c))


def test_regret_of_a_level_with_known_optimum_matches_its_definition(antagonist, ta_train):
    # Only "right" reaches the object, which pays 1 and ends the episode: optimum 1; a uniform
    # policy collects with probability 1/5 per step, so it returns 1 - 0.8^6.
    assert float(mg.optimal_return(ENV, CORRIDOR)) == pytest.approx(1.0, abs=1e-6)
    uniform = jnp.full((ENV.num_states, 5), 0.2)
    assert float(mg.policy_return(ENV, CORRIDOR, uniform)) == pytest.approx(1 - 0.8**6, rel=1e-5)
    # An LPG whose π̂ head is zero never changes its (uniform) policy.
    cfg, train = ta_train
    zero = cfg.replace(lpg_params={**cfg.lpg_params, "pi_w": jnp.zeros_like(cfg.lpg_params["pi_w"])})
    _, m = train(jax.random.key(0), zero, CORRIDOR)
    assert float(m["return"][0]) == pytest.approx(1 - 0.8**6, rel=1e-5)
    ant = antagonist(jax.random.key(0), CORRIDOR)
    r = groove.regret(ant.ret, m["return"][0])
    assert float(r) == pytest.approx(float(ant.ret) - (1 - 0.8**6), abs=1e-6)
    assert 0.0 < float(r) <= 0.8**6 + 1e-6  # A2C learnt something, and nobody beats the optimum


@pytest.mark.parametrize("rows,objects,expected", [
    (["S#0", "#..", "..."], [(1.0, 1.0, 0.0)], 0.0),  # the positive object is walled off
    (["S.0", "...", "1.."], [(-0.5, 0.5, 0.1), (-1.0, 1.0, 0.0)], 0.0),  # nothing positive
    (["S##", "###", "###"], [], 0.0),  # no objects at all, agent boxed in
])  # fmt: skip
def test_bad_levels_give_finite_optimum_regret_and_training(rows, objects, expected, ta_train, antagonist):
    cfg, train = ta_train
    lv = mg.make_level(rows, objects, max_size=3, max_objects=2, max_steps=20, lifetime=5)
    assert float(mg.optimal_return(ENV, lv)) == pytest.approx(expected, abs=1e-6)
    _, m = train(jax.random.key(0), cfg, lv)
    ant = antagonist(jax.random.key(0), lv)
    values = [*m.values(), *ant, groove.regret(ant.ret, m["return"][0])]
    assert all(np.isfinite(np.asarray(v)).all() for v in values), m


# -- GROOVE buffer -------------------------------------------------------------------------------------
def test_buffer_replaces_the_lowest_scores_and_replays_by_rank():
    dist = mg.GridDistribution(min_size=2, max_size=3, max_objects=2, walls=1)
    buf = groove.init_buffer(3, jax.tree.map(lambda x: x[0], LEVELS))
    lv = jax.jit(mg.sample_levels, static_argnums=(1, 2))(jax.random.key(0), dist, 4)
    z = jnp.zeros(4)
    update = jax.jit(groove.update)
    buf = update(buf, -jnp.ones(4, int), lv, jnp.array([0.5, 0.1, 0.9, 0.3]), z, z, z)
    np.testing.assert_allclose(np.sort(np.asarray(buf.score)), [0.3, 0.5, 0.9])  # 0.1 lost its slot
    assert bool(buf.valid.all())
    w = np.asarray(groove.replay_weights(buf))
    np.testing.assert_allclose(w[np.argsort(-np.asarray(buf.score))], np.array([1, 1 / 2, 1 / 3]) / (11 / 6), rtol=1e-6)
    levels, idx = jax.jit(groove.sample, static_argnums=(2, 3))(jax.random.key(1), buf, dist, 2000, 0.5)
    frac = float(np.mean(np.asarray(idx) >= 0))
    assert 0.45 < frac < 0.55
    counts = np.bincount(np.asarray(idx)[np.asarray(idx) >= 0], minlength=3) / np.sum(np.asarray(idx) >= 0)
    np.testing.assert_allclose(counts, w, atol=0.05)
    # A replayed level is the stored one; its score is updated in place.
    i = int(np.flatnonzero(np.asarray(idx) >= 0)[0])
    assert int(levels.start[i]) == int(buf.levels.start[idx[i]])
    buf2 = update(buf, jnp.array([idx[i]]), jax.tree.map(lambda x: x[i:i + 1], levels), jnp.array([-5.0]),
                         z[:1], z[:1], z[:1])  # fmt: skip
    assert float(buf2.score[idx[i]]) == -5.0 and int(buf2.replays[idx[i]]) == 1


# -- bad config ------------------------------------------------------------------------------------------
def test_bad_config_errors_name_the_field():
    with pytest.raises(ValueError, match="update_rule"):
        lpg.LPGConfig(update_rule="ppo")
    with pytest.raises(ValueError, match="lpg_params is None"):
        lpg.LPGConfig()
    with pytest.raises(ValueError, match=r"gru_wi.*temporal=True"):
        lpg.LPGConfig(temporal=True, meta_hidden=8, lpg_params=lpg.init_params(hidden=8, temporal=False))
    with pytest.raises(ValueError, match="LPGConfig.lifetime"):
        lpg.LPGConfig(update_rule="a2c", lifetime=300, max_lifetime=250)
    with pytest.raises(ValueError, match="lr_pi"):
        lpg.LPGConfig(update_rule="a2c", lr_pi=0.0)
    with pytest.raises(ValueError, match="GridDistribution.min_size"):
        mg.GridDistribution(min_size=8, max_size=6)
    with pytest.raises(ValueError, match="GridDistribution.episode_length"):
        mg.GridDistribution(episode_length=(50, 10))
    with pytest.raises(ValueError, match="obs"):
        mg.MetaGrid(obs="pixels")
    with pytest.raises(ValueError, match="max_lifetime"):
        cfg = _cfg()
        lpg.make_train(ENV, cfg)(jax.random.key(0), cfg, LEVELS.replace(lifetime=jnp.array([5, 50, 5])))


# -- meta-testing on gymnax envs ------------------------------------------------------------------------
from rlx import envs  # noqa: E402
from rlx.agents.meta import lpg_gym, meta_test  # noqa: E402
from rlx.agents.meta.es import save_params  # noqa: E402

GYM = dict(num_envs=2, num_steps=10, total_steps=80, hidden=(8,), **META)  # 4 updates, 40 steps per env


@pytest.fixture(scope="module")
def gym_ta():
    """TA-LPG with a non-trivial π̂ head driving the MLP agent on CartPole."""
    env, env_params = envs.make("gymnax/CartPole-v1")
    cfg = lpg_gym.LPGGymConfig(**GYM, temporal=True, lpg_params=_cfg(temporal=True).lpg_params)
    train = lpg_gym.make_train(env, cfg)
    return cfg, train, jax.jit(train), env_params


def test_gym_lpg_runs_every_update_with_finite_metrics(gym_ta):
    cfg, _, train, env_params = gym_ta
    state, m = train(jax.random.key(0), cfg, env_params)
    assert cfg.num_updates == 4 and int(state.update_step) == 4
    assert {k: v.shape for k, v in m.items()} == {k: (4,) for k in m}
    np.testing.assert_array_equal(np.asarray(m["env_steps"]), [20, 40, 60, 80])
    for k in ("policy_loss", "kl_loss", "reward_per_step"):
        assert np.isfinite(np.asarray(m[k])).all(), k
    assert np.isfinite(float(m["episode_return"][-1])) and float(m["episodes"][-1]) >= 1
    # π̂ != 0 moved the policy head away from its zero start; the untrained rule (π̂ head
    # zero) has no policy gradient at all and leaves the policy uniform.
    assert float(jnp.abs(state.params["pi"][0]).max()) > 0
    zero = cfg.replace(lpg_params={**cfg.lpg_params, "pi_w": jnp.zeros_like(cfg.lpg_params["pi_w"])})
    state, m = train(jax.random.key(0), zero, env_params)
    np.testing.assert_array_equal(np.asarray(m["policy_loss"]), 0.0)
    np.testing.assert_array_equal(np.asarray(state.params["pi"][0]), 0.0)


def test_gym_lpg_vmapped_seeds_equal_seeds_one_by_one(gym_ta):
    cfg, raw, train, env_params = gym_ta
    keys = jax.random.split(jax.random.key(5), 2)
    batched = jax.jit(jax.vmap(raw, (0, None, None)))(keys, cfg, env_params)[1]
    for i in range(2):
        single = train(keys[i], cfg, env_params)[1]
        for k in single:
            np.testing.assert_allclose(np.asarray(batched[k][i]), np.asarray(single[k]), rtol=1e-5, atol=1e-6, err_msg=k)
    assert not np.allclose(np.asarray(batched["policy_loss"][0]), np.asarray(batched["policy_loss"][1]))


@pytest.mark.parametrize("env_id", ["gymnax/Acrobot-v1", "gymnax/Breakout-MinAtar"])
def test_gym_lpg_shapes_on_other_envs(env_id):
    """Traced only (no compile): 6-d Acrobot and [10, 10, 4] MinAtar observations (flattened
    for the networks; the state keeps them as the env gives them)."""
    env, env_params = envs.make(env_id)
    cfg = lpg_gym.LPGGymConfig(**GYM, lpg_params=lpg.init_params(hidden=8, y_bins=4, phi_hidden=4))
    state, m = jax.eval_shape(lpg_gym.make_train(env, cfg), jax.random.key(0), cfg, env_params)
    assert m["episode_return"].shape == (4,) and state.obs.shape == (2,) + tuple(env.observation_space().shape)


def test_meta_test_runs_a2c_and_a_saved_lpg_on_gymnax(tmp_path):
    ta = lpg.init_params(jax.random.key(0), True, hidden=8, y_bins=4, phi_hidden=4)  # π̂ head zero
    save_params(str(tmp_path / "lpg.npz"), lpg.without_time_inputs(ta))
    rules = [meta_test.parse_drift("a2c"), meta_test.parse_drift(f"mine=lpg:{tmp_path / 'lpg.npz'}")]
    assert [(d.name, d.kind) for d in rules] == [("a2c", "a2c"), ("mine", "lpg")]
    rows, curves = meta_test.meta_test(rules, ["gymnax/CartPole-v1"], seeds=2, base_steps=80,
                                       lpg_overrides=dict(num_envs=2, num_steps=10, hidden=(8,)), progress=False)  # fmt: skip
    assert len(rows) == 4 and {r["total_steps"] for r in rows} == {80}
    assert {k: v[1].shape for k, v in curves.items()} == {("gymnax/CartPole-v1", n, 1.0): (2, 4) for n in ("a2c", "mine")}
    assert meta_test.lpg_preset("gymnax/CartPole-v1", rules[1]).meta_hidden == 8


def test_lpg_network_without_time_inputs_is_the_ta_network_with_them_zeroed():
    ta = _cfg(temporal=True).lpg_params
    x = jax.random.normal(jax.random.key(0), (6, 3, 7)).at[..., 5:].set(0.0)
    done = jax.random.bernoulli(jax.random.key(1), 0.3, (6, 3))
    a = lpg.meta_outputs(ta, x, done)
    b = lpg.meta_outputs(lpg.without_time_inputs(ta), x[..., :5], done)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6, atol=1e-7), a, b)


def test_gym_lpg_bad_env_and_bad_specs_fail_before_compile(tmp_path):
    for env_id in ("gymnax/Pendulum-v1", "brax/inverted_pendulum"):
        env, _ = envs.make(env_id)
        with pytest.raises(ValueError, match="continuous actions.*discrete-action env"):
            lpg_gym.make_agent(env, lpg_gym.LPGGymConfig(update_rule="a2c"))
    with pytest.raises(ValueError, match="LPGGymConfig.lpg_params is None"):
        lpg_gym.LPGGymConfig()
    with pytest.raises(ValueError, match=r"gru_wi.*temporal=True"):
        lpg_gym.LPGGymConfig(temporal=True, meta_hidden=8, lpg_params=lpg.init_params(hidden=8))
    with pytest.raises(ValueError, match="LPGGymConfig.total_steps"):
        lpg_gym.LPGGymConfig(update_rule="a2c", num_envs=4, num_steps=10, total_steps=39)
    ta = lpg.init_params(jax.random.key(0), True, hidden=8)
    save_params(str(tmp_path / "ta.npz"), ta)
    save_params(str(tmp_path / "drift.npz"), {"w1": jnp.zeros((8, 4))})
    bad = {
        f"x=lpg:{tmp_path / 'ta.npz'}": "TA-LPG network.*use KIND ta_lpg",
        f"x=lpg:{tmp_path / 'drift.npz'}": "not an LPG meta-network",
        f"x=sgd:{tmp_path / 'ta.npz'}": "KIND 'sgd' is invalid",
        f"x=a2c:{tmp_path / 'ta.npz'}": "KIND 'a2c' is invalid",
        f"x=ta_lpg:{tmp_path / 'none.npz'}": "no file",
        "sgd": "accepted values are ppo, .*a2c, lpg, ta_lpg",
        "x=lpg": "expected NAME=KIND:PATH.npz",
    }
    for spec, msg in bad.items():
        with pytest.raises(ValueError, match=msg):
            meta_test.parse_drift(spec)
    d = meta_test.parse_drift(f"ta=ta_lpg:{tmp_path / 'ta.npz'}")
    assert meta_test.lpg_preset("gymnax/Breakout-MinAtar", d).hidden == (256, 256)
