"""Test entry point: 8 fake CPU devices (to test sharding on a laptop), the CPU
async-dispatch guard. Set before jax is imported. (No persistent compilation cache: on
this CPU its loads log machine-feature mismatch errors for every program.)"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_CPU_ENABLE_ASYNC_DISPATCH", "false")
import jax  # noqa: E402
import pytest  # noqa: E402

from rlx import envs  # noqa: E402
from rlx.agents import ppo  # noqa: E402

# A tiny PPO setting shared by many tests: 6 updates of 4 envs x 16 steps.
TINY_PPO = dict(num_envs=4, num_steps=16, total_steps=4 * 16 * 6, num_minibatches=2, update_epochs=2)


@pytest.fixture(scope="session")
def cartpole():
    return envs.make("gymnax/CartPole-v1")


@pytest.fixture(scope="session")
def deep_sea_treasure():
    return envs.make("rlx/deep-sea-treasure")


@pytest.fixture(scope="session")
def tiny_ppo(cartpole):
    env, params = cartpole
    cfg = ppo.PPOConfig(**TINY_PPO)
    return ppo.make_agent(env, cfg), cfg, params


def pytest_configure(config):
    assert len(jax.devices()) == 8, "tests expect 8 fake CPU devices; was jax imported before conftest?"


# Notebooks run top to bottom under nbmake; the default suite keeps the PPO quick tour (its
# Runner, load, evaluate and sweep cells are the ones every notebook uses), the rest run with
# -m slow (dqn and meta_learning: 23-28 s each on a quiet core; test_ppo_pieces and test_meta
# cover the injected-drift and ES paths meta_learning shows).
DEFAULT_NOTEBOOKS = {"ppo.ipynb"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).endswith(".ipynb") and os.path.basename(str(item.fspath)) not in DEFAULT_NOTEBOOKS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def made():
    """`made(name, **kwargs) -> (env, params)`: `envs.make`, once per (name, kwargs) in a module."""
    from rlx import envs

    cache = {}

    def get(name, **kwargs):
        key = (name, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = envs.make(name, **kwargs)
        return cache[key]

    return get
