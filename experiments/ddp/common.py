"""Helpers shared by the ddp experiments' deep parts (not an experiment itself):
training a population of members (panels x seeds) in one compiled program, padding
MDPs so that different panels share that program, and the DQN baseline's settings."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rlx.agents import dqn
from rlx.config import stack
from rlx.envs.tabular import SparseMDP
from rlx.train import make_train


def pad_outcomes(mdp: SparseMDP, n: int) -> SparseMDP:
    """The same MDP with `n` outcomes per (s, a) (extra ones have probability 0), so
    that MDPs of different outcome counts stack into one population."""
    k = mdp.successors.shape[-1]
    if k > n:
        raise ValueError(f"pad_outcomes: the MDP has {k} outcomes per (s, a), more than n = {n}.")
    pad = lambda x, v: jnp.concatenate([x, jnp.full(x.shape[:-1] + (n - k,), v, x.dtype)], -1)  # noqa: E731
    succ = jnp.concatenate([mdp.successors, jnp.repeat(mdp.successors[..., :1], n - k, -1)], -1)
    return mdp.replace(successors=succ, successor_probs=pad(mdp.successor_probs, 0.0),
                       successor_rewards=pad(mdp.successor_rewards, 0.0))


def train_and_evaluate(agent: Any, cfgs: Sequence[Any], env_params: Sequence[Any], seeds: int,
                       evaluate: Callable, key: int = 0) -> tuple[Any, dict, float]:
    """Train `len(cfgs) * seeds` members (member i*seeds + s: config i, seed s) and
    evaluate each with `evaluate(state, cfg, env_params, key) -> pytree`, all in one
    `jit(vmap)`: one compile per agent. Returns `(evaluations [P, ...], final-update
    metrics {name: [P]}, wall seconds incl. compile)`."""
    cfg = stack([c for c in cfgs for _ in range(seeds)])
    params = jax.tree.map(lambda *x: jnp.stack(x), *[p for p in env_params for _ in range(seeds)])
    train = make_train(agent, cfgs[0])

    def member(k, c, ep):
        k_train, k_eval = jax.random.split(k)
        state, metrics = train(k_train, c, ep)
        return evaluate(state, c, ep, k_eval), jax.tree.map(lambda m: m[-1], metrics)

    keys = jax.random.split(jax.random.key(key), len(cfgs) * seeds)
    t0 = time.perf_counter()
    out, metrics = jax.device_get(jax.jit(jax.vmap(member))(keys, cfg, params))
    return out, metrics, time.perf_counter() - t0


def dqn_config(**overrides) -> dqn.DQNConfig:
    """Plain risk-neutral DQN on the small grids: 16 envs, one gradient step per 4 env
    steps, (128, 128) MLP, gamma 0.99, ε decayed over 30% of the run."""
    kw = dict(num_envs=16, total_steps=100_000, learning_starts=4096, buffer_size=50_000, utd=0.25, batch_size=128,
              hidden=(128, 128), gamma=0.99, eps_fraction=0.3, target_update_period=100)
    kw.update(overrides)
    return dqn.DQNConfig(**kw)


def empirical_law(returns: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    """Monte-Carlo returns (integers on the atoms) -> probabilities over `atoms: [M]`."""
    idx = np.searchsorted(atoms, np.round(returns))
    if np.any(idx >= len(atoms)) or np.any(atoms[np.clip(idx, 0, len(atoms) - 1)] != np.round(returns)):
        raise ValueError("empirical_law: a return is not on the atoms.")
    return np.bincount(idx, minlength=len(atoms)) / len(returns)
