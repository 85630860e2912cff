"""The Jumanji adapter (jumanji/): listed without importing jumanji, a one-line error without
it; check_env (one env here, the rest slow; the registry conformance of tests/test_envs.py
covers them too); trajectories equal to jumanji's own for the same keys and actions over 8
vmapped envs (observations, rewards, episode ends, auto-reset), with upstream's time-limit
termination split into terminated / truncated; flat observations and actions."""

import importlib.util
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import envs
from rlx.envs import jumanji_adapter
from rlx.envs.registry import EnvArgumentError, EnvSuiteMissingError

HAS_JUMANJI = importlib.util.find_spec("jumanji") is not None
pytestmark = pytest.mark.skipif(not HAS_JUMANJI, reason="jumanji is not installed: pip install 'rlx[jumanji]'")
NAMES = [f"jumanji/{i}" for i in jumanji_adapter.IDS]
# check_env compiles two programs, 5-15 s per env on 2 busy CPU cores: one in the default suite.
FAST = {"jumanji/Knapsack-v1"}



def test_registry_conformance_covers_every_jumanji_env():
    """tests/test_envs.py's conformance test runs over the whole registry, these envs included
    (in the slow suite there, as one program compiles for each)."""
    from tests.test_envs import registry_params

    covered = {p.id for p in registry_params()}
    assert set(NAMES) <= covered

def test_listed_without_importing_jumanji_and_missing_package_names_the_extra(monkeypatch):
    code = "import sys, rlx.envs; n = rlx.envs.names(); print(sum(x.startswith('jumanji/') for x in n), 'jumanji' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(len(NAMES)), "False"]
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "jumanji" else find_spec(n, *a))
    with pytest.raises(EnvSuiteMissingError) as err:
        envs.make("jumanji/Snake-v1")
    line = str(err.value)
    assert "\n" not in line and "pip install 'rlx[jumanji]'" in line and "jumanji/Snake-v1" in line, line


def test_arguments_and_episode_lengths(made):
    with pytest.raises(EnvArgumentError, match="takes no argument 'num_row'; accepted: time_limit, num_rows, num_cols.$"):
        envs.make("jumanji/Snake-v1", num_row=5)
    with pytest.raises(ValueError, match="time_limit = 0 is invalid"):
        envs.make("jumanji/Snake-v1", time_limit=0)
    with pytest.raises(ValueError, match="time_limit = None is invalid"):
        envs.make("jumanji/Snake-v1", time_limit=None)
    # Upstream's episode lengths.
    lengths = {"Snake-v1": 4000, "Maze-v0": 100, "RubiksCube-partly-scrambled-v0": 20, "Tetris-v0": 400,
               "Cleaner-v0": 100, "Game2048-v1": None, "Minesweeper-v0": None, "Knapsack-v1": None}  # fmt: skip
    assert set(lengths) == set(jumanji_adapter.IDS)
    for env_id, length in lengths.items():
        env, params = made(f"jumanji/{env_id}")
        assert params is None and env.episode_length == length and env.name == f"jumanji/{env_id}"
        if length is not None:  # upstream's own limit is out of reach
            assert env.jumanji_env.time_limit > length
    env, _ = made("jumanji/Snake-v1", num_rows=6, num_cols=6, time_limit=50)
    assert env.episode_length == 50 and env.observation_space().shape == (6 * 6 * 5 + 1 + 4,)
    assert made("jumanji/Game2048-v1", time_limit=30)[0].episode_length == 30


def test_flat_observations_and_actions(made):
    """Maze: fields in spec order (agent row, col, target row, col, walls, step count, mask;
    upstream's NamedTuple puts the mask before the step count), bounds from the spec.
    RubiksCube: 6 x 1 x 3 = 18 flat actions, C order. Cleaner: the joint mask of its 3
    agents is the product of theirs."""
    from jumanji.environments.routing.maze.types import Observation, Position

    env, _ = made("jumanji/Maze-v0")
    walls = np.arange(100).reshape(10, 10) % 3 == 0
    o = Observation(agent_position=Position(row=1, col=2), target_position=Position(row=3, col=4),
                    walls=jnp.asarray(walls), action_mask=jnp.asarray([True, False, True, False]),
                    step_count=jnp.asarray(7, jnp.int32))  # fmt: skip
    flat = np.asarray(env.flatten_obs(o))
    assert flat.dtype == np.float32 and flat.shape == env.observation_space().shape == (109,)
    assert flat[:4].tolist() == [1, 2, 3, 4] and flat[104] == 7 and flat[105:].tolist() == [1, 0, 1, 0]
    np.testing.assert_array_equal(flat[4:104], walls.ravel().astype(np.float32))
    space = env.observation_space()
    assert space.low[:4] == (0.0,) * 4 and space.high[:4] == (9.0,) * 4 and space.high[104] == np.inf
    assert np.asarray(env.action_mask(o)).tolist() == [True, False, True, False]

    cube, _ = made("jumanji/RubiksCube-partly-scrambled-v0")
    assert cube.num_values == (6, 1, 3) and cube.action_space().n == 18
    back = np.stack([np.asarray(jumanji_adapter.unflatten_action(jnp.asarray(a), cube.num_values)) for a in range(18)])
    np.testing.assert_array_equal(back, np.stack(np.unravel_index(np.arange(18), (6, 1, 3)), axis=1))

    cleaner, _ = made("jumanji/Cleaner-v0")
    assert cleaner.action_space().n == 64
    mask = np.array([[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 1, 1]], bool)
    joint = np.asarray(cleaner.action_mask(types.SimpleNamespace(action_mask=jnp.asarray(mask))))
    expect = [mask[0, a // 16] & mask[1, (a // 4) % 4] & mask[2, a % 4] for a in range(64)]
    assert joint.tolist() == expect and 0 < sum(expect) < 64


@pytest.mark.parametrize("name", [pytest.param(n, id=n, marks=[] if n in FAST else [pytest.mark.slow]) for n in NAMES])
def test_check_env(name, made):
    env, params = made(name)
    report = envs.check_env(env, params, steps=32)
    assert report["observation"] == {"shape": env.observation_space().shape, "dtype": "float32"}
    assert report["reward"] == {"shape": (), "dtype": "float32"}
    assert report["terminated"] + report["truncated"] == report["episodes_ended"]


def _against_jumanji(name, limit, ours, steps, n=8, poison=None):
    """`n` envs of our `name` (kwargs `ours`) and of jumanji's own env with time limit `limit`,
    in one jit(vmap(scan)): the same reset keys, upstream's multi-discrete actions drawn at
    random and given to ours as flat indices, upstream auto-reset (by hand) from the key that
    ours resets from. Returns (our first obs, upstream's first obs) and, per step
    ([n, steps, ...]): ours (obs, reward, terminated, truncated, final_obs, action_mask) and
    upstream's (step obs flat, reset obs flat, reward, last, discount, step_count, step mask,
    reset mask), and our time before the step; a mask is upstream's `action_mask` raveled
    (all True without one). `poison(upstream_state, our_time, env_index)`, if given,
    changes both envs' upstream states alike before each step."""
    import jumanji

    env, _ = envs.make(name, **ours)
    up = jumanji.make(name.split("/")[1], time_limit=limit)
    num_values = env.num_values

    def mask_of(o):
        return getattr(o, "action_mask", jnp.ones(num_values, bool)).reshape(-1)

    def run(key, index):
        k_reset, k_steps = jax.random.split(key)
        obs0, state = env.reset(k_reset)
        ustate, first = up.reset(jax.random.key_data(k_reset))

        def body(carry, k):
            state, ustate = carry
            before = state.time
            if poison is not None:
                state = state._replace(env=poison(state.env, before, index))
                ustate = poison(ustate, before, index)
            k_act, k_env = jax.random.split(k)
            keys = jax.random.split(k_act, len(num_values))
            parts = [jax.random.randint(kk, (), 0, m) for kk, m in zip(keys, num_values)]
            flat = jnp.ravel_multi_index(tuple(parts), num_values, mode="clip").astype(jnp.int32)
            obs, state, r, te, tr, info = env.step(k_env, state, flat)
            unext, uts = up.step(ustate, jnp.stack(parts).astype(jnp.int32) if len(num_values) > 1 else flat)
            ufresh, ufresh_ts = up.reset(jax.random.key_data(k_env))
            ustate = jax.tree.map(lambda a, b: jnp.where(uts.last(), a, b), ufresh, unext)
            return (state, ustate), ((obs, r, te, tr, info["final_obs"], info["action_mask"]),
                                     (env.flatten_obs(uts.observation), env.flatten_obs(ufresh_ts.observation),
                                      uts.reward, uts.last(), uts.discount, unext.step_count,
                                      mask_of(uts.observation), mask_of(ufresh_ts.observation), before))  # fmt: skip

        _, out = jax.lax.scan(body, (state, ustate), jax.random.split(k_steps, steps))
        return (obs0, env.flatten_obs(first.observation)), out

    keys = jnp.stack([jax.random.key(i) for i in range(n)])
    first, (mine, theirs) = jax.jit(jax.vmap(run))(keys, jnp.arange(n))
    return [np.asarray(x) for x in first], [np.asarray(x) for x in mine], [np.asarray(x) for x in theirs]


def _snake_dies_at_the_limit(state, time, index):
    """Envs 0-3, on each episode's last step (time 7 of 8): every move marked invalid in
    upstream's state, so the move ends the game (jumanji ends it on an invalid move)."""
    return state.replace(action_mask=state.action_mask & ~((time == 7) & (index < 4)))


@pytest.mark.parametrize("name, limit, ours, steps, min_terminated, poison", [
    pytest.param("jumanji/Snake-v1", 8, {"time_limit": 8}, 40, 4, _snake_dies_at_the_limit, id="Snake-v1"),
    pytest.param("jumanji/RubiksCube-partly-scrambled-v0", 6, {"time_limit": 6}, 20, 0, None,
                 id="RubiksCube-partly-scrambled-v0", marks=pytest.mark.slow),
    pytest.param("jumanji/Maze-v0", None, {}, 240, 0, None, id="Maze-v0", marks=pytest.mark.slow),
    pytest.param("jumanji/Tetris-v0", 10, {"time_limit": 10}, 40, 2, None, id="Tetris-v0", marks=pytest.mark.slow),
])  # fmt: skip
def test_same_trajectory_as_jumanji_over_8_envs(name, limit, ours, steps, min_terminated, poison):
    """Same keys, same actions: ours sees jumanji's observations, rewards and action masks;
    an episode ends (and resets to jumanji's reset from the same key) exactly where jumanji's
    LAST step is; a LAST at jumanji's time limit is truncated, one before it (the game's end)
    terminated. Also the jit + vmap over 8 envs check. Snake: envs 0-3 die on every
    episode's last step, where jumanji's LAST (discount 0) looks the same as a time limit:
    ours must say terminated there, and truncated for envs 4-7 (unless they die then too).
    RubiksCube: multi-discrete actions; random moves never solve it, so only truncation.
    Maze: upstream's default limit of 100 steps."""
    (first, ufirst), mine, theirs = _against_jumanji(name, limit, ours, steps, poison=poison)
    obs, reward, term, trunc, final, mask = mine
    uobs, ureset, ureward, last, disc, count, umask, ureset_mask, before = theirs
    np.testing.assert_array_equal(first, ufirst)
    np.testing.assert_array_equal(final, uobs)  # final_obs: upstream's observation of the step
    np.testing.assert_array_equal(reward, ureward.astype(np.float32))
    assert term.dtype == trunc.dtype == np.bool_ and not (term & trunc).any()
    np.testing.assert_array_equal(term | trunc, last)
    np.testing.assert_array_equal(obs, np.where(last[..., None], ureset, uobs))  # the auto-reset: jumanji's reset
    np.testing.assert_array_equal(mask, np.where(last[..., None], ureset_mask, umask))
    assert (disc[last] == 0).all()  # jumanji 1.1.2: every LAST here, time limit or not, has discount 0
    at_limit = count >= (100 if limit is None else limit)  # upstream's step count after the step
    assert (trunc <= (last & at_limit)).all() and ((last & ~at_limit) <= term).all()
    assert trunc.sum() >= 2 and term.sum() >= min_terminated, (term.sum(), trunc.sum())
    if poison is not None:
        final_step = before == limit - 1
        assert final_step[:4].sum() >= 4 and final_step[4:].sum() >= 4  # the case happens in both halves
        assert term[:4][final_step[:4]].all() and not trunc[:4].any()
        assert (trunc[4:] == (final_step[4:] & ~term[4:])).all() and trunc[4:].sum() >= 4
