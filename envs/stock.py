"""Stock augmentation for any env on rlx's interface (Pires et al. 2025, §3).

The wrapped env carries a stock c with `c_{t+1} = (c_t + r_{t+1}) / gamma`, so that
`c_t + G_t = gamma^{-t} (c_0 + G_0)`: from any time the quantity still to be controlled
is a rescaled copy of the original one.

Observation (a dict pytree):

    {"obs": <the inner observation>,
     "stock": float32 [],            # c_t
     "time_to_go": int32 []}         # max_steps - t; only with time_to_go=True

Auto-reset (from `Environment.step`) restores a fresh c_0, drawn uniformly from
`[c0_low, c0_high]` in the params (equal bounds give a fixed c_0). `info["final_obs"]`
holds the final dict observation, with the final stock. Because the stock evolves
deterministically given the reward, a stored transition is valid for *every* stock:
`relabel_stocks` gives replayed transitions fresh stocks in hindsight.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from rlx.envs.core import Box, Environment


@flax.struct.dataclass
class StockState:
    """The inner env's state, the stock c_t and this episode's c_0 (scalars)."""

    env_state: object
    stock: jax.Array  # float32 [], c_t
    c0: jax.Array  # float32 [], this episode's c_0


@flax.struct.dataclass
class StockParams:
    """The inner env's params, the discount of the stock update and the c_0 range (scalars)."""

    env_params: object
    gamma: jax.Array  # float32 [], the discount in the stock update
    c0_low: jax.Array  # float32 [], c_0 ~ U[c0_low, c0_high] at every reset
    c0_high: jax.Array


def stock_params(env_params, gamma: float = 1.0, c0=0.0) -> StockParams:
    """Params for `StockWrapper`: `c0` is a number (fixed) or a `(low, high)` range."""
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma: must be in (0, 1], got {gamma}.")
    low, high = (c0, c0) if jnp.ndim(c0) == 0 else tuple(c0)
    if low > high:
        raise ValueError(f"c0: range must have low <= high, got ({low}, {high}).")
    f = lambda x: jnp.asarray(x, jnp.float32)
    return StockParams(env_params, f(gamma), f(low), f(high))


class StockWrapper(Environment):
    """Wrap `env` (an `Environment`) with a stock; see the module docstring."""

    def __init__(self, env: Environment, time_to_go: bool = False):
        self.env, self.time_to_go = env, time_to_go
        self.reward_dim = env.reward_dim

    @property
    def name(self) -> str:
        return f"Stock({self.env.name})"

    @property
    def default_params(self) -> StockParams:
        return stock_params(self.env.default_params)

    def _obs(self, obs, env_state, stock, params):
        out = {"obs": obs, "stock": stock}
        if self.time_to_go:
            out["time_to_go"] = (params.env_params.max_steps_in_episode - env_state.time).astype(jnp.int32)
        return out

    def reset_env(self, key, params):
        k_env, k_c0 = jax.random.split(key)
        obs, env_state = self.env.reset_env(k_env, params.env_params)
        c0 = jax.random.uniform(k_c0, (), jnp.float32, params.c0_low, params.c0_high)
        state = StockState(env_state=env_state, stock=c0, c0=c0)
        return self._obs(obs, env_state, c0, params), state

    def step_env(self, key, state, action, params):
        obs, env_state, reward, terminated, info = self.env.step_env(key, state.env_state, action, params.env_params)
        stock = next_stock(state.stock, reward, params.gamma)
        state = StockState(env_state=env_state, stock=stock, c0=state.c0)
        return self._obs(obs, env_state, stock, params), state, reward, terminated, info

    def is_truncated(self, state, params):
        return self.env.is_truncated(state.env_state, params.env_params)

    def observation_space(self, params):
        spaces = {"obs": self.env.observation_space(params.env_params),
                  "stock": Box(-float("inf"), float("inf"), ())}
        if self.time_to_go:
            spaces["time_to_go"] = Box(0.0, float("inf"), ())
        return spaces

    def action_space(self, params):
        return self.env.action_space(params.env_params)


def next_stock(stock: jax.Array, reward: jax.Array, gamma) -> jax.Array:
    """`c' = (c + r) / gamma`, elementwise: any shapes that broadcast."""
    return (stock + reward) / gamma


def relabel_stocks(key: jax.Array, rewards: jax.Array, gamma, low, high):
    """Hindsight stocks for replayed transitions: draw `c ~ U[low, high]` per transition
    and return `(stocks, next_stocks)`, both shaped like `rewards: [B]`. Valid because a
    transition (s, a, r, s') holds for every stock, with next stock `(c + r)/gamma`."""
    stocks = jax.random.uniform(key, rewards.shape, rewards.dtype, low, high)
    return stocks, next_stock(stocks, rewards, gamma)


def stocks_along(c0: jax.Array, rewards: jax.Array, gamma) -> jax.Array:
    """Stocks along a sequence: `c0: [B]`, `rewards: [T, B]` -> `[T + 1, B]` (c_0..c_T);
    for relabelling a replayed n-step segment from a fresh c_0."""

    def step(c, r):
        c = next_stock(c, r, gamma)
        return c, c

    _, cs = jax.lax.scan(step, c0, rewards)
    return jnp.concatenate([c0[None], cs], axis=0)


def normalise_stock(stock: jax.Array, low, high) -> jax.Array:
    """Map the safe stock range `[low, high]` to `[-1, 1]` and clip (network input)."""
    return jnp.clip(2.0 * (stock - low) / (high - low) - 1.0, -1.0, 1.0)
