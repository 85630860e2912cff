"""envs/stock.py: the stock-augmentation wrapper and hindsight relabelling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.agents.ddp import objectives as O
from rlx.agents.ddp import tabular as T
from rlx.envs import stock as stock_lib
from rlx.envs.tabular import ddp_grid, random_mdp, to_env


def rollout(env, params, key, steps, policy=None):
    """Random-action (or `policy(obs, t)`) rollout; returns the per-step pytrees."""
    obs, state = env.reset(jax.random.fold_in(key, 0), params)

    def step(carry, k):
        obs, state = carry
        ka, ks = jax.random.split(k)
        a = env.action_space(params).sample(ka) if policy is None else policy(obs)
        obs2, state2, r, term, trunc, info = env.step(ks, state, a, params)
        return (obs2, state2), dict(obs=obs, reward=r, term=term, trunc=trunc, final=info["final_obs"])

    _, out = jax.lax.scan(step, (obs, state), jax.random.split(key, steps))
    return out


@pytest.fixture(scope="module")
def wrapped():
    mdp = random_mdp(jax.random.key(0), 4, 2, 2, -2, 2)
    inner, inner_params = to_env(mdp, max_steps=7)
    env = stock_lib.StockWrapper(inner, time_to_go=True)
    return env, inner_params


def test_stock_identity_along_trajectories(wrapped):
    """`c_t + G_t = gamma^(-t) (c_0 + G_0)` at every step of every finished episode."""
    env, inner_params = wrapped
    gamma = 0.8
    params = stock_lib.stock_params(inner_params, gamma, c0=(-3.0, 3.0))
    out = jax.device_get(jax.jit(lambda k: rollout(env, params, k, 200))(jax.random.key(1)))
    stocks, rewards = out["obs"]["stock"], out["reward"]
    done = out["term"] | out["trunc"]
    ends = np.flatnonzero(done)
    assert len(ends) >= 20
    for start, end in zip(ends[:-1] + 1, ends[1:]):
        r = rewards[start:end + 1].astype(np.float64)
        G = np.zeros(len(r) + 1)
        for t in reversed(range(len(r))):
            G[t] = r[t] + gamma * G[t + 1]
        c = stocks[start:end + 1].astype(np.float64)
        t = np.arange(len(r))
        np.testing.assert_allclose(c + G[:-1], gamma ** (-t) * (c[0] + G[0]), rtol=1e-5, atol=1e-4)
        # The final observation carries the stock after the last reward.
        final_stock = out["final"]["stock"][end]
        assert final_stock == pytest.approx((c[-1] + r[-1]) / gamma, rel=1e-5, abs=1e-5)


def test_auto_reset_restores_c0_and_time_to_go(wrapped):
    env, inner_params = wrapped
    params = stock_lib.stock_params(inner_params, 0.9, c0=-2.5)  # a fixed c_0
    out = jax.device_get(jax.jit(lambda k: rollout(env, params, k, 60))(jax.random.key(2)))
    done = out["term"] | out["trunc"]
    starts = np.concatenate([[0], np.flatnonzero(done)[:-1] + 1])
    assert len(starts) >= 5
    np.testing.assert_array_equal(out["obs"]["stock"][starts], -2.5)
    np.testing.assert_array_equal(out["obs"]["time_to_go"][starts], 7)
    # Episodes that were cut by the time limit ran exactly 7 steps.
    assert np.all(out["obs"]["time_to_go"] >= 1)
    # A sampled c_0 range is respected and resampled per episode.
    params = stock_lib.stock_params(inner_params, 0.9, c0=(-1.0, 4.0))
    out = jax.device_get(jax.jit(lambda k: rollout(env, params, k, 60))(jax.random.key(3)))
    done = out["term"] | out["trunc"]
    c0s = out["obs"]["stock"][np.concatenate([[0], np.flatnonzero(done)[:-1] + 1])]
    assert np.all((c0s >= -1.0) & (c0s <= 4.0)) and len(np.unique(c0s)) == len(c0s)


def test_bad_stock_params(wrapped):
    _, inner_params = wrapped
    with pytest.raises(ValueError, match="gamma"):
        stock_lib.stock_params(inner_params, 1.5)
    with pytest.raises(ValueError, match="c0"):
        stock_lib.stock_params(inner_params, 0.9, c0=(2.0, 1.0))


def test_relabelling():
    rewards = jnp.array([1.0, -2.0, 0.5])
    c, c_next = stock_lib.relabel_stocks(jax.random.key(0), rewards, 0.5, -4.0, 4.0)
    np.testing.assert_allclose(c_next, (c + rewards) / 0.5)
    assert bool(jnp.all((c >= -4) & (c <= 4)))
    # A sequence: the scan equals the loop.
    rs = jax.random.normal(jax.random.key(1), (5, 3))
    c0 = jnp.array([0.0, 1.0, -1.0])
    cs = stock_lib.stocks_along(c0, rs, 0.9)
    loop = [np.asarray(c0)]
    for t in range(5):
        loop.append((loop[-1] + np.asarray(rs[t])) / 0.9)
    np.testing.assert_allclose(cs, np.stack(loop), rtol=1e-5)
    assert float(stock_lib.normalise_stock(jnp.array(10.0), -4.0, 4.0)) == 1.0


def test_dvi_policy_drives_the_wrapped_env_to_the_target():
    """End to end: the exact DVI policy for the 4x4 grid, acting on the stock-wrapped
    env (the interface a deep agent sees), returns exactly the requested target."""
    mdp = ddp_grid()
    H = 16
    grid = T.exact_grid(mdp, H)
    result, _, _ = T.solve(mdp, O.target(0.0), grid, 1.0, horizon=H, exact=True)
    inner, inner_params = to_env(mdp, max_steps=H)
    env = stock_lib.StockWrapper(inner, time_to_go=True)
    c_min = grid.stocks[0]

    def policy(obs):
        t = H - obs["time_to_go"]
        s = jnp.argmax(obs["obs"])
        j = jnp.round(obs["stock"] - c_min).astype(jnp.int32)
        return result.policy[t, s, j]

    @jax.jit
    def episode_return(target):
        params = stock_lib.stock_params(inner_params, 1.0, c0=0.0).replace(c0_low=-target, c0_high=-target)
        out = rollout(env, params, jax.random.key(0), H, policy)
        first_end = jnp.argmax(out["term"] | out["trunc"])
        return jnp.sum(jnp.where(jnp.arange(H) <= first_end, out["reward"], 0.0))

    for target in (-5.0, 0.0, 3.0, 8.0, 26.0):
        assert float(episode_return(jnp.float32(target))) == target
