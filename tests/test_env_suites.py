"""The Craftax (craftax/) and XLand-MiniGrid (xland/) adapters: listed without importing
their packages, a one-line error without them; each env passes check_env (and, in
tests/test_envs.py, the registry conformance check); jit and vmap over 8 envs;
terminated / truncated / final_obs at hand-driven episode ends; XLand benchmarks load from the data folder and are never
downloaded; (slow) PPO beats a random policy on Craftax-Classic and on an XLand task."""

import importlib.util
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import envs
from rlx.envs import craftax_adapter, xland_adapter
from rlx.envs.registry import EnvSuiteMissingError
from tests.test_envs import registry_params

HAS_CRAFTAX = importlib.util.find_spec("craftax") is not None
HAS_XLAND = importlib.util.find_spec("xminigrid") is not None
needs_craftax = pytest.mark.skipif(not HAS_CRAFTAX, reason="craftax is not installed: pip install 'rlx[craftax]'")
needs_xland = pytest.mark.skipif(not HAS_XLAND, reason="xminigrid is not installed: pip install 'rlx[xland]'")

CRAFTAX = [f"craftax/{i}" for i in craftax_adapter.IDS]
XLAND = [f"xland/{i}" for i in xland_adapter.IDS]
# check_env compiles two programs: about 40-80 s for Craftax-Classic on 2 CPU cores, 100 s
# for full Craftax, 5-15 s for each XLand env; the default suite checks the two XLand kinds
# (Craftax-Classic's jit and vmap over 8 envs and its episode ends are checked below).
FAST = {"xland/MiniGrid-Empty-5x5", "xland/XLand-MiniGrid-R1-9x9"}


def suite_params(names=CRAFTAX + XLAND):
    return [pytest.param(n, id=n, marks=[needs_craftax if n.startswith("craftax/") else needs_xland]
                         + ([] if n in FAST else [pytest.mark.slow])) for n in names]  # fmt: skip


# -- the registry ---------------------------------------------------------------------------------
def test_listed_without_importing_the_suites():
    code = ("import sys, rlx.envs; n = rlx.envs.names(); "
            "print(sum(x.startswith(('craftax/', 'xland/')) for x in n), 'craftax' in sys.modules, 'xminigrid' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(len(CRAFTAX) + len(XLAND)), "False", "False"]
    assert set(CRAFTAX + XLAND) <= set(envs.names())


@pytest.mark.parametrize("name, package, extra", [(CRAFTAX[0], "craftax", "craftax"), (XLAND[0], "xminigrid", "xland")])
def test_missing_package_is_one_line_naming_the_extra(monkeypatch, name, package, extra):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == package else find_spec(n, *a))
    with pytest.raises(EnvSuiteMissingError) as err:
        envs.make(name)
    line = str(err.value)
    assert "\n" not in line and f"pip install 'rlx[{extra}]'" in line and name in line, line


# -- every env ------------------------------------------------------------------------------------
def test_registry_conformance_covers_every_suite_env():
    """tests/test_envs.py's conformance test runs over the whole registry, these envs included
    (there, not again here: a Craftax compile is 20-50 s on 2 CPU cores)."""
    covered = {p.id for p in registry_params()}
    assert set(CRAFTAX + XLAND) <= covered


@pytest.mark.parametrize("name", suite_params())
def test_check_env(name, made):
    env, params = made(name)
    report = envs.check_env(env, params, steps=16)
    assert report["observation"]["dtype"] == "float32" and report["reward"] == {"shape": (), "dtype": "float32"}
    assert report["env"] == name and report["terminated"] + report["truncated"] == report["episodes_ended"]


# -- episode ends by hand -------------------------------------------------------------------------
@needs_craftax
def test_craftax_time_limit_is_truncation_and_death_is_termination_over_8_envs(made):
    """8 Craftax-Classic envs in one jit(vmap): envs 0-3 with max_timesteps 3, envs 4-7 their
    twins (the same keys) with upstream's 10,000. max_timesteps is a traced leaf read only by
    upstream's game-over test, so a twin's observation at step 3 is what its partner saw
    before the reset. Also the jit + vmap over 8 envs check for Craftax."""
    env, default = made(CRAFTAX[0])
    short, params = made(CRAFTAX[0], max_timesteps=3)
    assert int(params.max_timesteps) == 3 and short.default_params is params and short.episode_length == 3
    assert int(default.max_timesteps) == 10_000
    n = 8
    limits = jnp.asarray([3] * 4 + [10_000] * 4)
    batch = jax.vmap(lambda m: default.replace(max_timesteps=m))(limits)
    twin = lambda keys: jnp.concatenate([keys[:4], keys[:4]])  # noqa: E731
    reset = jax.jit(jax.vmap(env.reset))
    step = jax.jit(jax.vmap(env.step, (0, 0, None, 0)))
    noop = jnp.asarray(0, jnp.int32)
    obs, state = reset(twin(jax.random.split(jax.random.key(0), n)), batch)
    assert len({np.asarray(o).tobytes() for o in obs[:4]}) == 4  # random worlds, told apart by their keys
    for t in range(1, 4):
        keys = twin(jax.random.split(jax.random.key(10 + t), n))
        obs, state, reward, term, trunc, info = step(keys, state, noop, batch)
        final = np.asarray(info["final_obs"])
        assert obs.shape == final.shape == (n, *env.observation_space(default).shape) and reward.shape == (n,)
        assert not np.asarray(term).any() and np.asarray(trunc).tolist() == [t == 3] * 4 + [False] * 4
        np.testing.assert_array_equal(final[:4], np.asarray(obs[4:]))  # the observation before any reset
        if t < 3:
            np.testing.assert_array_equal(obs, final)
            assert np.asarray(state.timestep).tolist() == [t] * n
        else:  # cut off at timestep 3: the next episode began, from the step's reset key
            fresh, _ = reset(jax.vmap(lambda k: jax.random.split(k)[1])(keys), batch)
            np.testing.assert_array_equal(obs[:4], fresh[:4])
            assert np.asarray(state.timestep).tolist() == [0] * 4 + [3] * 4
    # Death is termination, also on the step that reaches the time limit (env 0: timestep 2
    # of 3, both at once; never both flags).
    dying = jnp.asarray([1, 1, 0, 0, 1, 1, 0, 0], bool)
    state = state.replace(player_health=jnp.where(dying, 0, state.player_health).astype(state.player_health.dtype),
                          timestep=state.timestep.at[0].set(2))  # fmt: skip
    obs, state, reward, term, trunc, info = step(jax.random.split(jax.random.key(6), n), state, noop, batch)
    assert np.asarray(term).tolist() == dying.tolist() and not np.asarray(trunc).any()
    assert np.asarray(state.timestep).tolist() == [0, 0, 1, 1, 0, 0, 4, 4]


def _drive(env, params, actions, n=8):
    """`n` envs (keys 0 .. n-1) in one jit(vmap): reset, then `actions` in order. Returns the
    first observations and, per step (leading axes [n, steps]), obs, reward, terminated,
    truncated, final_obs, upstream's observation for the same step, and the step count."""
    space = env.observation_space(params)

    def run(key):
        k_reset, k_steps = jax.random.split(key)
        obs, state = env.reset(k_reset, params)

        def body(state, xs):
            k, a = xs
            upstream = env.xminigrid_env.step(params, state, a)
            obs, state, r, te, tr, info = env.step(k, state, a, params)
            return state, (obs, r, te, tr, info["final_obs"], upstream.observation.astype(jnp.float32),
                           state.state.step_num)  # fmt: skip

        keys = jax.random.split(k_steps, len(actions))
        return obs, jax.lax.scan(body, state, (keys, jnp.asarray(actions, jnp.int32)))[1]

    first, out = jax.jit(jax.vmap(run))(jnp.stack([jax.random.key(i) for i in range(n)]))
    assert first.shape == (n, *space.shape) and out[0].shape == out[4].shape == (n, len(actions), *space.shape)
    assert out[0].dtype == out[4].dtype == jnp.float32 and out[2].dtype == out[3].dtype == jnp.bool_
    return np.asarray(first), [np.asarray(x) for x in out]


@needs_xland
def test_xland_goal_is_termination_and_max_steps_truncation_over_8_envs(made):
    """Empty-5x5 in 8 envs (also the jit + vmap check for XLand): the agent starts at (1, 1)
    facing right, the goal is at (3, 3); every episode starts the same, so the observation
    after a reset is the first one, and the 8 envs run alike."""
    to_goal = [0, 0, 1, 0, 0]  # forward, forward, turn right, forward, forward
    # max_steps 5: the goal on the step that reaches the time limit is terminated alone.
    env, params = made("xland/MiniGrid-Empty-5x5", max_steps=5)
    assert params.max_steps == 5 and env.default_params is params
    first, (obs, reward, term, trunc, final, upstream, step_num) = _drive(env, params, to_goal)
    np.testing.assert_array_equal(final, upstream)  # final_obs: the step's own observation, before any reset
    assert (term == [False] * 4 + [True]).all() and not trunc.any()
    assert (reward[:, :4] == 0).all() and reward[:, 4] == pytest.approx(1.0 - 0.9 * 5 / 5)
    np.testing.assert_array_equal(obs[:, :4], final[:, :4])
    np.testing.assert_array_equal(obs[:, 4], first)  # the next episode's first observation
    assert not np.array_equal(final[:, 4], first) and (step_num == [1, 2, 3, 4, 0]).all()
    # max_steps 3: cut off before the goal, truncated with no reward; the next episode begins.
    env, params = made("xland/MiniGrid-Empty-5x5", max_steps=3)
    first, (obs, reward, term, trunc, final, upstream, step_num) = _drive(env, params, to_goal)
    np.testing.assert_array_equal(final, upstream)
    assert (trunc == [False, False, True, False, False]).all() and not term.any() and not reward.any()
    np.testing.assert_array_equal(obs[:, 2], first)
    assert not np.array_equal(final[:, 2], first) and (step_num == [1, 2, 0, 1, 2]).all()


# -- XLand benchmarks -----------------------------------------------------------------------------
@needs_xland
def test_xland_benchmark_is_refused_not_downloaded(monkeypatch, tmp_path):
    from xminigrid import benchmarks

    monkeypatch.setattr(benchmarks, "DATA_PATH", str(tmp_path))
    monkeypatch.setattr(benchmarks, "_download_from_hf", lambda *a: pytest.fail("it tried to download"))
    with pytest.raises(xland_adapter.XLandBenchmarkMissingError) as err:
        envs.make("xland/XLand-MiniGrid-R1-9x9", benchmark="trivial-21k", ruleset_id=3)
    line = str(err.value)
    assert "\n" not in line and "xminigrid.load_benchmark('trivial-21k')" in line and "XLAND_MINIGRID_DATA" in line
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="only for the xland/XLand-MiniGrid"):
        envs.make("xland/MiniGrid-Empty-5x5", benchmark="trivial-21k")
    with pytest.raises(ValueError, match="needs benchmark=NAME"):
        envs.make("xland/XLand-MiniGrid-R1-9x9", ruleset_id=1)
    with pytest.raises(ValueError, match="is unknown"):
        xland_adapter.load_benchmark("trivial-22k")


@needs_xland
def test_xland_benchmark_from_the_data_folder(monkeypatch, tmp_path):
    """A benchmark file in xminigrid's format (two rulesets: reach a red / a green ball) is
    read from the data folder; ruleset_id picks one, benchmark_params stacks them for vmap."""
    from xminigrid import benchmarks
    from xminigrid.core.constants import TILES_REGISTRY, Colors, Tiles
    from xminigrid.core.goals import AgentOnTileGoal
    from xminigrid.core.rules import EmptyRule

    balls = [TILES_REGISTRY[Tiles.BALL, c] for c in (Colors.RED, Colors.GREEN)]
    data = {"goals": np.stack([np.asarray(AgentOnTileGoal(tile=b).encode()) for b in balls]),
            "rules": np.stack([np.asarray(EmptyRule().encode())[None]] * 2),
            "init_tiles": np.stack([np.asarray(b)[None] for b in balls]),
            "num_rules": np.ones(2, np.int32)}  # fmt: skip
    benchmarks.save_bz2_pickle(data, str(tmp_path / benchmarks.NAME2HFFILENAME["trivial-21k"]))
    monkeypatch.setattr(benchmarks, "DATA_PATH", str(tmp_path))
    monkeypatch.setattr(benchmarks, "_download_from_hf", lambda *a: pytest.fail("it tried to download"))
    env, params = envs.make("xland/XLand-MiniGrid-R1-9x9", benchmark="trivial-21k", ruleset_id=1)
    np.testing.assert_array_equal(params.ruleset.init_tiles, data["init_tiles"][1])
    _, state = env.reset(jax.random.key(0), params)
    grid = np.asarray(state.state.grid).reshape(-1, 2).tolist()
    assert list(map(int, balls[1])) in grid and list(map(int, balls[0])) not in grid
    with pytest.raises(ValueError, match="rulesets 0 .. 1"):
        envs.make("xland/XLand-MiniGrid-R1-9x9", benchmark="trivial-21k", ruleset_id=2)
    stacked = xland_adapter.benchmark_params(params, "trivial-21k", [0, 1, 1])
    obs, states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), 3), stacked)
    assert obs.shape == (3, *env.observation_space(params).shape)
    np.testing.assert_array_equal(states.state.goal_encoding, data["goals"][[0, 1, 1]])


# -- learning (slow) ------------------------------------------------------------------------------
def random_return(env, params, key, num_envs, steps):
    """The mean return of the episodes a uniformly random policy finishes in `steps` steps
    of `num_envs` envs, and how many it finished."""
    space = env.action_space(params)

    def run(key):
        k_reset, k_run = jax.random.split(key)
        _, state = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, num_envs), params)

        def body(carry, k):
            state, ret, total, count = carry
            k_act, k_env = jax.random.split(k)
            action = jax.vmap(space.sample)(jax.random.split(k_act, num_envs))
            _, state, r, te, tr, _ = jax.vmap(env.step, (0, 0, 0, None))(jax.random.split(k_env, num_envs), state, action, params)
            ret = ret + r
            done = te | tr
            return (state, jnp.where(done, 0.0, ret), total + jnp.sum(jnp.where(done, ret, 0.0)), count + done.sum()), None

        zero = jnp.zeros(num_envs)
        (_, _, total, count), _ = jax.lax.scan(body, (state, zero, 0.0, 0), jax.random.split(k_run, steps))
        return total / jnp.maximum(count, 1), count

    mean, count = jax.jit(run)(key)
    return float(mean), int(count)


def train_ppo(name, cfg, seeds=2, **env_kwargs):
    from rlx.agents import ppo
    from rlx.population import make_population
    from rlx.train import Runner

    env, params = envs.make(name, **env_kwargs)
    agent = ppo.make_agent(env, cfg)
    start = time.perf_counter()
    res = Runner(agent, make_population(cfg, seeds=seeds), params, None, chunk_updates=cfg.num_updates,
                 devices=1, progress=False).run()  # fmt: skip
    seconds = time.perf_counter() - start
    returns = res.metrics["episode_return"]  # [seeds, updates]
    return env, params, returns, seconds


@pytest.mark.slow
@needs_craftax
def test_ppo_beats_random_on_craftax_classic():
    """Craftax-Classic-Symbolic, 2 seeds of 102,400 steps (32 envs x 64 steps, 50 updates):
    each seed's mean training return over the last 5 updates beats a uniformly random
    policy's mean episode return by at least 1.0 (measured 2026-12-02 on 2 busy CPU cores:
    3.57 and 3.14 after 168 s of training; random 1.30 over 451 episodes)."""
    from rlx.agents import ppo

    cfg = ppo.PPOConfig(num_envs=32, num_steps=64, total_steps=102_400, num_minibatches=8, update_epochs=4,
                        hidden=(256, 256), critic_hidden=(256, 256), lr=3e-4, gae_lambda=0.8)  # fmt: skip
    env, params, returns, seconds = train_ppo(CRAFTAX[0], cfg)
    rand, episodes = random_return(env, params, jax.random.key(0), 64, 1000)
    final = np.nanmean(returns[:, -5:], axis=1)
    print(f"craftax classic: {cfg.total_steps} steps x 2 seeds in {seconds:.0f} s; first 5 updates "
          f"{np.nanmean(returns[:, :5], axis=1)}, last 5 {final}; random {rand:.2f} over {episodes} episodes")  # fmt: skip
    assert episodes >= 100 and np.all(final >= rand + 1.0), (final, rand)


@pytest.mark.slow
@needs_xland
def test_ppo_beats_random_on_xland_doorkey():
    """MiniGrid-DoorKey-5x5 (pick up the key, open the door, reach the goal), 2 seeds of
    200,704 steps (16 envs x 64 steps, 196 updates): each seed's mean training return over
    the last 5 updates is at least 0.8 and beats a random policy's by 0.5 (measured
    2026-12-02 on 2 CPU cores: 0.89 and 0.96 after 25 s; random 0.04 over 517 episodes)."""
    from rlx.agents import ppo

    cfg = ppo.PPOConfig(num_envs=16, num_steps=64, total_steps=200_704, num_minibatches=4, update_epochs=4,
                        lr=5e-4, ent_coef=0.01)  # fmt: skip
    env, params, returns, seconds = train_ppo("xland/MiniGrid-DoorKey-5x5", cfg)
    rand, episodes = random_return(env, params, jax.random.key(0), 64, 2000)
    final = np.nanmean(returns[:, -5:], axis=1)
    print(f"xland DoorKey-5x5: {cfg.total_steps} steps x 2 seeds in {seconds:.0f} s; first 5 updates "
          f"{np.nanmean(returns[:, :5], axis=1)}, last 5 {final}; random {rand:.2f} over {episodes} episodes")  # fmt: skip
    assert episodes >= 100 and np.all(final >= 0.8) and np.all(final >= rand + 0.5), (final, rand)
