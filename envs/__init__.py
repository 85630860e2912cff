"""Environments: one functional interface over gymnax, brax and our own JAX envs.

    env, params = rlx.envs.make("gymnax/CartPole-v1")
    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

`register(name, factory)` adds an env (installed suites add theirs through `rlx.envs`
entry points); `check_env(env, params)` checks one against the interface. The
interface and a worked example: docs/custom-env.md.
"""

from rlx.envs.check import check_env, check_interface
from rlx.envs.core import Box, Discrete, Environment
from rlx.envs.registry import check_name, make, names, register

__all__ = ["Box", "Discrete", "Environment", "make", "names", "check_name", "register", "check_env", "check_interface"]
