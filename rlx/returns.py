"""Returns and advantages over time-major batches, tested against rlax and plain loops."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: jax.Array | float,
    lam: jax.Array | float,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation that bootstraps on truncation.

        δ_t = r_t + γ (1 - terminated_t) V(s'_t) - V(s_t)
        A_t = δ_t + γ λ (1 - done_t) A_{t+1}

    `s'_t` is the true next state of step t: for a step that ended an episode it is
    the final state (not the reset state the env moved on to), so a truncated step
    still bootstraps from V(final state), while a terminated one does not. The
    recursion is cut at every episode end (`done = terminated | truncated`).

    Args:
      rewards: `[T, ...]`, time-major, as are the next four.
      values: `[T, ...]`, V(s_t).
      next_values: `[T, ...]`, V(s'_t).
      terminated: `[T, ...]`.
      done: `[T, ...]`, terminated or truncated.
      gamma: scalar (may be traced).
      lam: scalar (may be traced).

    Returns:
      `(advantages, returns)`, both `[T, ...]`; `returns = advantages + values`.
    """
    not_term = 1.0 - terminated.astype(values.dtype)
    not_done = 1.0 - done.astype(values.dtype)
    deltas = rewards + gamma * not_term * next_values - values

    def backward(carry, xs):
        delta, nd = xs
        adv = delta + gamma * lam * nd * carry
        return adv, adv

    _, adv = jax.lax.scan(
        backward, jnp.zeros_like(deltas[0]), (deltas, not_done), reverse=True
    )
    return adv, adv + values


def discounted_returns(
    rewards: jax.Array, done: jax.Array, bootstrap: jax.Array, gamma: jax.Array | float
) -> jax.Array:
    """G_t = r_t + γ (1 - done_t) G_{t+1}, with G_T = bootstrap. `[T, ...]` -> `[T, ...]`."""
    not_done = 1.0 - done.astype(rewards.dtype)

    def backward(carry, xs):
        r, nd = xs
        g = r + gamma * nd * carry
        return g, g

    _, out = jax.lax.scan(backward, bootstrap, (rewards, not_done), reverse=True)
    return out
