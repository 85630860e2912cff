"""Minecart (`rlx/minecart`) against MO-Gymnasium's minecart-v0: the same ore draws
fed through both, observations, vector rewards and episode ends compared step by
step; the approximate front and convex coverage set against upstream's."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import envs
from rlx.envs.mo.minecart import ACCEL, BRAKE, LEFT, MINE, NONE, RIGHT, Minecart

mo_gym = pytest.importorskip("mo_gymnasium", reason="parity needs mo-gymnasium (the test extra)")

# float32 here, float64 upstream: positions and speeds drift by rounding only.
OBS_ATOL = 1e-4
REWARD_ATOL = 1e-6


def upstream(max_steps: int):
    """MO-Gymnasium's minecart-v0 whose mined ore is `max(0, mean + std * z)` with
    `z` read from `feed["z"][frame]`: each call of its per-frame `mine()` is one frame."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = mo_gym.make("minecart-v0", max_episode_steps=max_steps)
    raw = env.unwrapped
    feed = {"z": None, "frame": 0}
    env_mine = raw.mine

    def mine_frame():
        feed["frame"] += 1
        return env_mine()

    def mine_draw(mine):
        z = feed["z"][feed["frame"] - 1]
        return [max(0.0, d.args[0] + d.args[1] * float(z[i])) for i, d in enumerate(mine.distributions)]

    raw.mine = mine_frame
    for m in raw.mines:
        m.mine = lambda m=m: mine_draw(m)
    return env, feed


def biased_action(rng: np.random.Generator) -> int:
    """Random actions that mine and accelerate often enough to reach mines, sell ore
    and end episodes within a few hundred steps."""
    return int(rng.choice([MINE, LEFT, RIGHT, ACCEL, BRAKE, NONE], p=[0.3, 0.1, 0.1, 0.3, 0.1, 0.1]))


def rollout_both(seed: int, steps: int, max_steps: int, actions=biased_action):
    env, params = envs.make("rlx/minecart", max_steps_in_episode=max_steps)
    step = jax.jit(env.step)
    up, feed = upstream(max_steps)
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    obs, state = env.reset(jax.random.key(0), params)
    up_obs, _ = up.reset(seed=seed)
    errs = dict(obs=0.0, reward=0.0, steps=0, terminated=0, truncated=0, ore_sold=0.0)
    np.testing.assert_allclose(np.asarray(obs), up_obs, atol=0)
    for t in range(steps):
        a = actions(rng)
        key, k = jax.random.split(key)
        # The draws `step` makes: Environment.step hands the first half of its key to step_env.
        feed["z"], feed["frame"] = np.asarray(env.ore_noise(jax.random.split(k)[0]), np.float64), 0
        obs, state, r, term, trunc, info = step(k, state, jnp.int32(a), params)
        up_obs, up_r, up_term, up_trunc, _ = up.step(a)
        assert bool(term) == bool(up_term) and bool(trunc) == bool(up_trunc), (seed, t)
        mine = np.asarray(info["final_obs"])
        errs["obs"] = max(errs["obs"], float(np.abs(mine - up_obs).max()))
        errs["reward"] = max(errs["reward"], float(np.abs(np.asarray(r) - up_r).max()))
        errs["ore_sold"] += float(up_r[:2].sum())
        errs["terminated"] += int(up_term)
        errs["truncated"] += int(up_trunc)
        if up_term or up_trunc:
            up_obs, _ = up.reset()
            np.testing.assert_array_equal(np.asarray(obs), up_obs)  # auto-reset to the start
        errs["steps"] += 1
    return errs


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_parity_with_mo_gymnasium_x64(seed):
    """Under x64 the cart is simulated with upstream's float64 operations: observations
    are equal bit for bit, rewards to one float32 rounding of the fuel cost."""
    with jax.enable_x64(True):
        errs = rollout_both(seed, steps=300, max_steps=80)
    print(f"x64 seed {seed}: {errs}")
    assert errs["obs"] == 0.0 and errs["reward"] <= 1e-8
    assert errs["terminated"] + errs["truncated"] >= 1


def test_parity_rollouts_cover_mining_selling_and_truncation():
    """Over the seeds, the random rollouts sell ore at the base, end episodes there
    and hit the time limit: the parity above covers every part of the dynamics."""
    with jax.enable_x64(True):
        totals = [rollout_both(seed, steps=300, max_steps=80) for seed in (0, 3)]
    assert all(e["obs"] == 0.0 for e in totals)
    assert sum(e["terminated"] for e in totals) >= 4 and sum(e["truncated"] for e in totals) >= 1
    assert sum(e["ore_sold"] for e in totals) > 1.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_parity_with_mo_gymnasium_float32(seed):
    """In float32 (the default) positions and speeds differ from upstream's float64 by
    rounding only, over 150 steps; longer rollouts can part at a wall contact that
    upstream's last bit decides (the module docstring)."""
    errs = rollout_both(seed, steps=150, max_steps=80)
    print(f"float32 seed {seed}: {errs}")
    assert errs["obs"] < OBS_ATOL and errs["reward"] < REWARD_ATOL


@pytest.mark.parametrize("gamma", [0.98, 0.99])
def test_front_and_ccs_equal_upstream(gamma):
    env, _ = envs.make("rlx/minecart")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = mo_gym.make("minecart-v0").unwrapped
    ours, theirs = env.pareto_front(gamma), np.asarray(raw.pareto_front(gamma))
    order = lambda f: f[np.lexsort(f.T[::-1])]  # noqa: E731
    assert ours.shape == theirs.shape and ours.shape[0] > 10
    np.testing.assert_allclose(order(ours), order(theirs), rtol=0, atol=1e-12)
    ccs, up_ccs = env.convex_coverage_set(gamma), np.asarray(raw.convex_coverage_set(gamma))
    assert 1 < ccs.shape[0] < ours.shape[0]
    np.testing.assert_allclose(order(ccs), order(up_ccs), rtol=0, atol=1e-12)
    # The pinned reference point (0, 0, -200) counts every front point; the route that
    # never mines sits on its ore axes (no volume), every other one above it.
    ref = env.mo_spec.ref_point
    assert np.all(ours >= ref) and np.sum(~np.all(ours > ref, axis=1)) == 1 and env.mo_spec.gamma == 0.98


def test_step_draws_ore_from_its_key():
    """`step` is random only through the key: the same key gives the same mined ore,
    another key other ore (the cart parked at a mine, mining)."""
    env, params = envs.make("rlx/minecart")
    _, state = env.reset(jax.random.key(0), params)
    parked = state.replace(pos=jnp.asarray([0.84, 0.84], state.pos.dtype), departed=jnp.asarray(True))
    step = jax.jit(env.step)
    a = step(jax.random.key(1), parked, jnp.int32(MINE), params)[1].content
    b = step(jax.random.key(1), parked, jnp.int32(MINE), params)[1].content
    c = step(jax.random.key(2), parked, jnp.int32(MINE), params)[1].content
    np.testing.assert_array_equal(a, b)
    assert float(jnp.abs(a - c).max()) > 0
    # Four frames of mine 2 (ore means 0.2, 0.2, std 0.05): about 0.8 of each.
    assert 0.5 < float(a[0]) < 1.1 and 0.5 < float(a[1]) < 1.1


def test_bad_frame_skip_is_refused():
    with pytest.raises(ValueError, match="frame_skip"):
        Minecart(frame_skip=0)
