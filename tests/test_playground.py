"""The MuJoCo Playground adapter (playground/): listed without importing playground, a
one-line error without it and for the envs whose assets upstream downloads; a trajectory
equal to Playground's own for the same keys and actions over 8 vmapped envs, with the time
limit as truncation and a diverged (NaN) physics state as termination (one cheap env in
the default suite: an MJX program compiles in 10-60 s on 2 CPU cores); check_env on every
DM Control Suite env (slow)."""

import importlib.util
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import envs
from rlx.envs import playground_adapter
from rlx.envs.registry import EnvArgumentError, EnvSuiteMissingError

HAS_PLAYGROUND = importlib.util.find_spec("mujoco_playground") is not None
needs_playground = pytest.mark.skipif(not HAS_PLAYGROUND, reason="playground is not installed: pip install 'rlx[playground]'")
NAMES = [f"playground/{i}" for i in playground_adapter.IDS]


def test_registry_conformance_covers_every_playground_env():
    """tests/test_envs.py's conformance test runs over the whole registry, these envs included
    (in the slow suite there, as one program compiles for each)."""
    from tests.test_envs import registry_params

    covered = {p.id for p in registry_params()}
    assert set(NAMES) <= covered and not covered & {f"playground/{i}" for i in playground_adapter.DOWNLOADS}


def test_listed_without_importing_playground_and_refusals(monkeypatch):
    code = ("import sys, rlx.envs; n = rlx.envs.names(); "
            "print(sum(x.startswith('playground/') for x in n), 'mujoco_playground' in sys.modules, 'mujoco' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(len(playground_adapter.IDS) + len(playground_adapter.DOWNLOADS)), "False", "False"]
    # Menagerie envs: refused in one line, before anything is imported or fetched.
    with pytest.raises(playground_adapter.PlaygroundAssetsError) as err:
        envs.make("playground/Go1JoystickFlatTerrain")
    line = str(err.value)
    assert "\n" not in line and "MuJoCo Menagerie" in line and "does not download" in line, line
    with pytest.raises(ValueError, match="impl 'cuda' is invalid: accepted values are jax, warp"):
        envs.make("playground/CartpoleBalance", impl="cuda")
    with pytest.raises(ValueError, match="episode_length = 0 is invalid"):
        envs.make("playground/CartpoleBalance", episode_length=0)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mujoco_playground" else find_spec(n, *a))
    with pytest.raises(EnvSuiteMissingError) as err:
        envs.make("playground/CartpoleBalance")
    line = str(err.value)
    assert "\n" not in line and "pip install 'rlx[playground]'" in line and "playground/CartpoleBalance" in line, line


@needs_playground
def test_config_arguments():
    with pytest.raises(EnvArgumentError, match="takes no argument 'ctrl_td'; accepted: episode_length, impl, action_repeat, ctrl_dt,"):
        envs.make("playground/CartpoleBalance", ctrl_td=0.02)
    env, params = envs.make("playground/PendulumSwingup", episode_length=300, action_repeat=2)
    assert params is None and env.max_steps == env.episode_length == 150 and env.action_repeat == 2
    assert env.playground_env.mjx_model.impl.value == "jax"
    assert env.action_space().low == (-1.0,) and env.action_space().high == (1.0,)
    assert env.observation_space().shape == (3,)


def _diverge(state, t, index):
    """Envs 0-3, at step 2: a NaN velocity, as a diverged simulation leaves."""
    bad = (t == 2) & (index < 4)
    return state.replace(data=state.data.replace(qvel=jnp.where(bad, jnp.nan, state.data.qvel)))


@needs_playground
def test_same_trajectory_as_playground_over_8_envs():
    """PendulumSwingup, 8 envs, episodes of 5 steps, 12 steps, in one jit(vmap(scan)) beside
    Playground's own env driven by hand (the same reset keys and random actions, its reset
    from the key ours resets from, a 5-step limit counted by hand): the same observations and
    rewards; truncated at steps 5 and 10; envs 0-3 get a NaN velocity at step 2 in both,
    which Playground reports as done: terminated, and the next episode starts from a
    finite reset. Also the jit + vmap over 8 envs check."""
    env, _ = envs.make("playground/PendulumSwingup", episode_length=5)
    # Upstream's functions, each traced once for the program (as the adapter does with its own).
    up_reset, up_step = jax.jit(env.playground_env.reset), jax.jit(env.playground_env.step)
    space = env.action_space()
    n, steps = 8, 12

    def run(key, index):
        k_reset, k_steps = jax.random.split(key)
        obs0, state = env.reset(k_reset)
        ustate = up_reset(jax.random.key_data(k_reset))

        def body(carry, xs):
            state, ustate, utime = carry
            t, k = xs
            state = state._replace(env=_diverge(state.env, t, index))
            ustate = _diverge(ustate, t, index)
            k_act, k_env = jax.random.split(k)
            action = space.sample(k_act)
            obs, state, r, te, tr, info = env.step(k_env, state, action)
            unext = up_step(ustate, action)
            utime = utime + 1
            udone = (unext.done > 0.5) | (utime >= 5)
            fresh = up_reset(jax.random.key_data(k_env))
            ustate = jax.tree.map(lambda a, b: jnp.where(udone, a, b), fresh, unext)
            return (state, ustate, jnp.where(udone, 0, utime)), (
                (obs, r, te, tr, info["final_obs"]), (unext.obs, fresh.obs, unext.reward, unext.done))

        xs = (jnp.arange(steps), jax.random.split(k_steps, steps))
        _, out = jax.lax.scan(body, (state, ustate, jnp.zeros((), jnp.int32)), xs)
        return (obs0, ustate.obs), out

    keys = jnp.stack([jax.random.key(i) for i in range(n)])
    (first, ufirst), (mine, theirs) = jax.jit(jax.vmap(run))(keys, jnp.arange(n))
    obs, reward, term, trunc, final = (np.asarray(x) for x in mine)
    uobs, ureset, ureward, udone = (np.asarray(x) for x in theirs)
    assert obs.shape == final.shape == (n, steps, 3) and obs.dtype == np.float32 and reward.shape == (n, steps)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(ufirst))
    np.testing.assert_array_equal(final, uobs)  # NaN where the state diverged, in both
    np.testing.assert_array_equal(reward, ureward)
    expect_term = np.zeros((n, steps), bool)
    expect_term[:4, 2] = True
    np.testing.assert_array_equal(term, expect_term)
    np.testing.assert_array_equal(term, udone > 0.5)
    # Time limit: steps 5 and 10 (indices 4, 9); envs 0-3 restarted at index 3, so theirs end at 7 and 12.
    expect_trunc = np.zeros((n, steps), bool)
    expect_trunc[4:, [4, 9]] = True
    expect_trunc[:4, 7] = True
    np.testing.assert_array_equal(trunc, expect_trunc)
    assert np.isnan(final[:4, 2]).any() and np.isfinite(obs).all() and np.isfinite(reward[4:]).all()
    done = (term | trunc)[..., None]
    np.testing.assert_array_equal(obs, np.where(done, ureset, uobs))  # the auto-reset: Playground's reset


@pytest.mark.slow
@needs_playground
@pytest.mark.parametrize("name", NAMES)
def test_check_env(name):
    env, params = envs.make(name)
    report = envs.check_env(env, params, steps=16)
    assert report["observation"] == {"shape": env.observation_space().shape, "dtype": "float32"}
    assert report["reward"] == {"shape": (), "dtype": "float32"} and report["episodes_ended"] == 0
