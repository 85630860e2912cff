"""Configs: validation before compile, overrides, stacking, and no recompiles for traced values."""

import jax
import numpy as np
import pytest

from rlx import config as C
from rlx.agents import ppo
from rlx.population import check_devices, make_population
from rlx.train import make_train


def test_negative_learning_rate_names_field_and_bound():
    with pytest.raises(ValueError, match=r"PPOConfig\.lr = -0\.1 is invalid: it must be > 0"):
        ppo.PPOConfig(lr=-0.1)


def test_minibatches_must_divide_batch():
    with pytest.raises(ValueError, match=r"num_minibatches = 3 is invalid: it must divide num_envs\*num_steps = 512"):
        ppo.PPOConfig(num_minibatches=3)


def test_choices_are_listed():
    with pytest.raises(ValueError, match=r"activation = 'sigmoid' is invalid: accepted values are 'tanh', 'relu'"):
        ppo.PPOConfig(activation="sigmoid")


def test_gamma_out_of_range():
    with pytest.raises(ValueError, match=r"gamma = 1\.5 .* <= 1"):
        ppo.PPOConfig(gamma=1.5)


def test_overrides_parse_types_and_reject_unknown_fields():
    cfg = C.apply_overrides(ppo.PPOConfig(), ["lr=3e-4", "num_envs=8", "hidden=32,32", "anneal_lr=false"])
    assert cfg.lr == 3e-4 and cfg.num_envs == 8 and cfg.hidden == (32, 32) and cfg.anneal_lr is False
    with pytest.raises(ValueError, match="has no field 'learning_rate'"):
        C.apply_overrides(cfg, ["learning_rate=1"])
    with pytest.raises(ValueError, match=r"lr = -1\.0 is invalid"):
        C.apply_overrides(cfg, {"lr": "-1"})


def test_population_stack_and_static_sweep_rejected():
    pop = make_population(ppo.PPOConfig(), seeds=3, grid={"lr": [1e-4, 1e-3]})
    assert pop.keys.shape == (6,)
    np.testing.assert_allclose(np.asarray(pop.cfg.lr), [1e-4] * 3 + [1e-3] * 3)
    assert pop.cfg.num_envs == 4  # static fields stay scalars
    assert [m["seed"] for m in pop.members] == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError, match="static field"):
        make_population(ppo.PPOConfig(), seeds=2, grid={"num_envs": [4, 8]})
    with pytest.raises(ValueError, match=r"lr = .* is invalid"):
        make_population(ppo.PPOConfig(), seeds=2, grid={"lr": [1e-3, -1.0]})


def test_population_must_divide_devices():
    check_devices(8, 4)
    with pytest.raises(ValueError, match=r"population size 6 is not divisible by devices = 4: accepted device counts .* \[1, 2, 3, 6\]"):
        check_devices(6, 4)


def test_json_round_trip():
    cfg = ppo.PPOConfig(lr=1e-3, hidden=(8, 8))
    back = C.from_dict(ppo.PPOConfig, C.to_dict(cfg))
    assert back == cfg


def test_traced_change_does_not_recompile(tiny_ppo):
    agent, cfg, params = tiny_ppo
    traces = []

    def counted_update(state, c, p):
        traces.append(1)  # runs only while tracing
        return agent.update(state, c, p)

    counted = agent._replace(update=counted_update)
    train = jax.jit(make_train(counted, cfg, num_updates=2))
    key = jax.random.key(0)
    jax.block_until_ready(train(key, cfg, params))
    n = len(traces)
    for lr in (1e-3, 3e-3):
        jax.block_until_ready(train(key, cfg.replace(lr=lr, clip_eps=0.1, gamma=0.9), params))
    assert len(traces) == n, "changing traced fields retraced the train function"
    jax.block_until_ready(train(key, cfg.replace(num_minibatches=1), params))
    assert len(traces) > n, "a static change must retrace (the counter must be able to fail)"


def test_an_agent_refuses_a_config_with_other_static_fields(tiny_ppo):
    """The agent's functions close over the static part of the config it was built with."""
    from rlx.config import ConfigError
    from rlx.train import Runner
    from rlx import population

    agent, cfg, env_params = tiny_ppo
    make_train(agent, cfg.replace(lr=1e-3))  # traced fields may differ: that is what a sweep does
    with pytest.raises(ConfigError, match=r"num_envs = 8 \(built with 4\)"):
        make_train(agent, cfg.replace(num_envs=8))
    pop = population.make_population(cfg.replace(update_epochs=3), seeds=[0, 1])
    with pytest.raises(ConfigError, match=r"update_epochs = 3 \(built with 2\)"):
        Runner(agent, pop, env_params, None, progress=False)
