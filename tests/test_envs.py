"""The env interface: a conformance test over the whole registry, and the wrappers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import envs
from rlx.envs.core import Box, Discrete
from rlx.envs.playground_adapter import DOWNLOADS
from rlx.envs.wrappers import ClipAction, EpisodeStats, RescaleAction, TimeLimit, episode_summary

# MNISTBandit downloads a data set at construction, and Playground's Menagerie envs are
# refused (their assets would be downloaded); brax envs other than `fast` take 15-30 s each
# to compile on CPU, Craftax 30-120 s, Playground and mujoco/ (MJX) 20-180 s, and Jumanji 3-15 s, so they
# run in the slow suite (tests/test_env_suites.py, test_jumanji.py, test_playground.py and
# test_mujoco.py check one env of each suite in the default one).
NEEDS_NETWORK = {"gymnax/MNISTBandit-bsuite", *(f"playground/{i}" for i in DOWNLOADS)}
FAST_BRAX = {"brax/fast"}
# Suites from optional extras: skipped, with the extra to install, when their package is missing.
SUITE_PACKAGES = {"craftax/": ("craftax", "craftax"), "xland/": ("xminigrid", "xland"),
                  "jumanji/": ("jumanji", "jumanji"), "playground/": ("mujoco_playground", "playground"),
                  "mujoco/": ("mujoco", "mujoco")}


def registry_params():
    import importlib.util

    out = []
    for name in envs.names():
        if name in NEEDS_NETWORK:
            continue
        marks = []
        if (name.startswith("brax/") and name not in FAST_BRAX) or name.startswith(("craftax/", "jumanji/", "playground/", "mujoco/")):
            marks.append(pytest.mark.slow)
        for prefix, (package, extra) in SUITE_PACKAGES.items():
            if name.startswith(prefix) and importlib.util.find_spec(package) is None:
                marks.append(pytest.mark.skip(reason=f"{package} is not installed: pip install 'rlx[{extra}]'"))
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def rollout(env, params, steps=24, batch=2):
    """Random actions for `steps` steps in `batch` envs, all in one jit."""
    space = env.action_space(params)

    def run(key):
        k_reset, k_run = jax.random.split(key)
        obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, batch), params)

        def step(carry, key):
            obs, state = carry
            k_act, k_env = jax.random.split(key)
            action = jax.vmap(space.sample)(jax.random.split(k_act, batch))
            out = jax.vmap(env.step, (0, 0, 0, None))(jax.random.split(k_env, batch), state, action, params)
            nobs, nstate, reward, term, trunc, info = out
            return (nobs, nstate), (obs, reward, term, trunc, info["final_obs"])

        (_, _), traj = jax.lax.scan(step, (obs, state), jax.random.split(k_run, steps))
        return obs, traj

    return jax.jit(run)(jax.random.key(0))


@pytest.mark.parametrize("name", registry_params())
def test_registry_conformance(name):
    env, params = envs.make(name)
    obs_space, act_space = env.observation_space(params), env.action_space(params)
    assert isinstance(obs_space, Box) and isinstance(act_space, (Box, Discrete))
    obs0, (obs, reward, term, trunc, final_obs) = rollout(env, params)
    assert obs0.shape == (2,) + obs_space.shape
    assert obs.shape == (24, 2) + obs_space.shape and final_obs.shape == obs.shape
    d = getattr(env, "reward_dim", None)
    assert reward.shape == ((24, 2, d) if d else (24, 2))
    assert term.dtype == jnp.bool_ and trunc.dtype == jnp.bool_
    assert not bool(jnp.any(term & trunc)), "truncated must exclude terminated"
    assert bool(jnp.all(jnp.isfinite(obs))) and bool(jnp.all(jnp.isfinite(reward)))


def test_unknown_env_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown environment 'gymnax/CartPol-v1'\. Did you mean: gymnax/CartPole-v1"):
        envs.make("gymnax/CartPol-v1")
    with pytest.raises(ValueError, match="brax/halfcheetah"):
        envs.make("brax/half_cheetah")


def test_bad_brax_backend_before_import():
    with pytest.raises(ValueError, match=r"backend 'warp' is invalid: accepted values are generalized, positional, spring, mjx"):
        envs.make("brax/fast", backend="warp")


def test_gymnax_final_obs_and_autoreset(cartpole):
    env, params = cartpole
    obs, state = env.reset(jax.random.key(1), params)
    step = jax.jit(env.step)
    for i in range(200):  # always push right: the pole falls within a few dozen steps
        obs2, state, r, term, trunc, info = step(jax.random.key(i), state, 1, params)
        if bool(term):
            # the returned obs is the next episode's first; final_obs is where the pole fell
            assert abs(float(info["final_obs"][2])) > 0.2 or abs(float(info["final_obs"][0])) > 2.4
            assert abs(float(obs2[2])) < 0.06 and int(state.time) == 0
            break
        np.testing.assert_array_equal(np.asarray(info["final_obs"]), np.asarray(obs2))
    else:
        pytest.fail("CartPole never terminated")


def test_episode_stats_tell_no_episode_from_zero_return(cartpole):
    env, params = cartpole
    env = EpisodeStats(env)
    obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.key(0), 3), params)
    mean, n = episode_summary(state)
    assert np.isnan(float(mean)) and int(n) == 0
    step = jax.jit(jax.vmap(env.step, (0, 0, None, None)))
    lengths = []
    for i in range(60):
        obs, state, r, term, trunc, info = step(jax.random.split(jax.random.key(i), 3), state, 1, params)
        for b in range(3):
            if bool(info["episode_done"][b]):
                lengths.append(int(info["episode_length"][b]))
                assert float(info["episode_return"][b]) == lengths[-1]  # CartPole pays 1 per step
    mean, n = episode_summary(state)
    assert int(n) == len(lengths) > 0 and np.isfinite(float(mean))


def test_time_limit_truncates_not_terminates(cartpole):
    env, params = cartpole
    env = TimeLimit(env, 5)
    obs, state = env.reset(jax.random.key(0), params)
    step = jax.jit(env.step)
    flags = []
    for i in range(10):
        obs, state, r, term, trunc, info = step(jax.random.key(i), state, i % 2, params)
        flags.append((bool(term), bool(trunc)))
    assert flags[4] == (False, True) and flags[9] == (False, True)
    assert all(f == (False, False) for j, f in enumerate(flags) if j not in (4, 9))
    with pytest.raises(ValueError, match="max_steps = 0"):
        TimeLimit(env, 0)


def test_action_clip_and_rescale():
    env, params = envs.make("gymnax/Pendulum-v1")  # torque in [-2, 2]
    seen = []

    class Spy:
        def __getattr__(self, name):
            return getattr(env, name)

        def step(self, key, state, action, params=None):
            seen.append(action)
            return env.step(key, state, action, params)

    obs, state = env.reset(jax.random.key(0), params)
    ClipAction(Spy()).step(jax.random.key(0), state, jnp.array([5.0]), params)
    RescaleAction(Spy()).step(jax.random.key(0), state, jnp.array([0.5]), params)
    assert float(seen[0][0]) == 2.0 and float(seen[1][0]) == 1.0
    assert RescaleAction(env).action_space(params) == Box(-1.0, 1.0, (1,))
