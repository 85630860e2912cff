"""Multi-objective brax envs: the objective vector sums, with the documented weights,
to brax's own reward; shapes, specs and bad names. The compile-heavy envs are slow."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from rlx.envs.mo.brax_mo import MO_BRAX, make_mo_brax


def _rollout(name, steps=12):
    env, params = make_mo_brax(name, backend="positional", episode_length=8)

    def body(carry, k):
        obs, state = carry
        k_act, k_step = jax.random.split(k)
        action = jax.random.uniform(k_act, env.action_space().shape, minval=-1.0, maxval=1.0)
        obs, state, r, term, trunc, info = env.step(k_step, state, action, params)
        return (obs, state), (r, info["scalar_reward"], term | trunc)

    @jax.jit
    def run(key):
        obs, state = env.reset(key, params)
        return jax.lax.scan(body, (obs, state), jax.random.split(key, steps))[1]

    return env, run(jax.random.key(0))


def _check(name):
    env, (r, scalar, done) = _rollout(name)
    assert r.shape == (12, env.reward_dim) and r.dtype == np.float32
    np.testing.assert_allclose(np.asarray(r) @ env.scalar_weights, np.asarray(scalar), rtol=1e-5, atol=1e-5)
    assert bool(done[7])  # truncated at the episode length, then auto-reset
    spec = env.mo_spec
    assert spec.ref_point.shape == (env.reward_dim,) and spec.gamma == 0.99
    assert not env.pareto_front_exact
    with pytest.raises(NotImplementedError):
        env.pareto_front(0.99)


def test_mo_halfcheetah_objectives_sum_to_the_brax_reward():
    _check("halfcheetah-2d")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in MO_BRAX if n != "halfcheetah-2d"])
def test_every_mo_brax_env_sums_to_the_brax_reward(name):
    _check(name)


def test_unknown_name_lists_the_accepted_ones():
    with pytest.raises(ValueError, match="halfcheetah-2d"):
        make_mo_brax("cheetah")
