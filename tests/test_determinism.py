"""Determinism for PPO, DQN and SAC: the same seed twice gives identical results, and a
population member equals its solo run on 1 and on 2 devices (the Runner's "map" mode)."""

import jax
import numpy as np
import pytest

from rlx import envs
from rlx.agents import dqn, ppo, sac
from rlx.population import make_population
from rlx.testing import host_leaves
from rlx.train import Runner, make_train

SETTINGS = {
    "ppo": ("gymnax/CartPole-v1", ppo, ppo.PPOConfig(num_envs=4, num_steps=16, total_steps=4 * 16 * 4, num_minibatches=2,
                                                     update_epochs=1)),
    "dqn": ("gymnax/CartPole-v1", dqn, dqn.DQNConfig(num_envs=4, rollout_steps=2, utd=0.5, learning_starts=32,
                                                     total_steps=32 + 8 * 4, buffer_size=48, batch_size=16, hidden=(16,))),
    "sac": ("gymnax/Pendulum-v1", sac, sac.SACConfig(num_envs=2, rollout_steps=2, utd=0.5, learning_starts=32,
                                                     total_steps=32 + 4 * 4, buffer_size=48, batch_size=16,
                                                     hidden=(16,), critic_hidden=(16,))),
}  # fmt: skip




# PPO's and SAC's member = solo checks also run in test_ppo.py and test_sac.py; all three here with -m slow.
@pytest.mark.parametrize("algo", [a if a == "dqn" else pytest.param(a, marks=pytest.mark.slow) for a in SETTINGS])
def test_same_seed_same_result_and_members_equal_solo_runs_on_1_and_2_devices(algo):
    env_name, module, cfg = SETTINGS[algo]
    env, params = envs.make(env_name)
    agent = module.make_agent(env, cfg)
    train = jax.jit(make_train(agent, cfg))
    solo = [train(jax.random.key(s), cfg, params) for s in (0, 1)]
    again = train(jax.random.key(0), cfg, params)
    for a, b in zip(host_leaves(solo[0]), host_leaves(again)):
        np.testing.assert_array_equal(a, b)
    pop = make_population(cfg, seeds=2)
    for devices in (1, 2):
        result = Runner(agent, pop, params, None, chunk_updates=2, devices=devices, progress=False,
                        population_mode="map").run()  # fmt: skip
        for member in (0, 1):
            state_m = jax.tree.map(lambda x: x[member], result.state)
            for a, b in zip(host_leaves(state_m), host_leaves(solo[member][0])):
                np.testing.assert_array_equal(a, b, err_msg=f"{algo}: member {member} on {devices} device(s)")
            for name, values in solo[member][1].items():
                np.testing.assert_array_equal(result.metrics[name][member], np.asarray(values), err_msg=name)
