"""Environments: one functional interface over gymnax, brax and our own JAX envs.

    env, params = rlx.envs.make("gymnax/CartPole-v1")
    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)
"""

from rlx.envs.core import Box, Discrete, Environment
from rlx.envs.registry import check_name, make, names, register

__all__ = ["Box", "Discrete", "Environment", "make", "names", "check_name", "register"]
