"""Action distributions as pure functions.

We write these few ourselves rather than depend on distrax, which now pulls
`tfp-nightly` (an unpinnable nightly) into every install.
Shapes: `logits: [..., A]`, `mean, log_std: [..., D]`; log-probs and entropies
reduce the last axis.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)


# Categorical -----------------------------------------------------------------
def categorical_sample(key: jax.Array, logits: jax.Array) -> jax.Array:
    """An action (int32 `[...]`) from `logits` `[..., A]`."""
    return jax.random.categorical(key, logits).astype(jnp.int32)


def categorical_log_prob(logits: jax.Array, action: jax.Array) -> jax.Array:
    """log π(action) `[...]` for `logits` `[..., A]` and integer `action` `[...]`."""
    logp = jax.nn.log_softmax(logits)
    # A one-hot sum, not take_along_axis: the same value and gradient, but on CPU the
    # gather (and the scatter-add in its gradient) under vmap cost about 3% of PPO's
    # CartPole speed with 4 vmapped members (benchmarks/profile_population.py). distrax
    # computes it this way too.
    one_hot = jax.nn.one_hot(action, logits.shape[-1], dtype=logp.dtype)
    return jnp.sum(one_hot * logp, axis=-1)


def categorical_entropy(logits: jax.Array) -> jax.Array:
    """Entropy `[...]` of `logits` `[..., A]`."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def categorical_kl(logits_p: jax.Array, logits_q: jax.Array) -> jax.Array:
    """KL(p || q) `[...]` for `logits_p`, `logits_q` `[..., A]`."""
    logp, logq = jax.nn.log_softmax(logits_p), jax.nn.log_softmax(logits_q)
    return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)


# Diagonal Gaussian -------------------------------------------------------------
def gaussian_sample(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """A sample `[..., D]` of the diagonal Gaussian with `mean`, `log_std` `[..., D]`."""
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, x: jax.Array) -> jax.Array:
    """log density `[...]` of `x` `[..., D]` under the diagonal Gaussian (`mean`, `log_std`
    `[..., D]`), summed over the last axis."""
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * _LOG_2PI, axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    """Entropy `[...]` of the diagonal Gaussian with `log_std` `[..., D]`."""
    return jnp.sum(log_std + 0.5 * (1.0 + _LOG_2PI), axis=-1)


# Tanh-squashed Gaussian --------------------------------------------------------
def tanh_log_det_jacobian(u: jax.Array) -> jax.Array:
    """log |d tanh(u)/du| = log(1 - tanh(u)^2), written stably as 2(log 2 - u - softplus(-2u)),
    summed over the last axis: `u` `[..., D]` -> `[...]`."""
    return jnp.sum(2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)


def tanh_gaussian_sample(key: jax.Array, mean: jax.Array, log_std: jax.Array):
    """Returns `(action, u)`, both `[..., D]` like `mean` and `log_std`: `action = tanh(u)`
    in (-1, 1), `u` the pre-squash sample."""
    u = gaussian_sample(key, mean, log_std)
    return jnp.tanh(u), u


def tanh_gaussian_log_prob(mean: jax.Array, log_std: jax.Array, u: jax.Array) -> jax.Array:
    """log-density `[...]` of `tanh(u)` by change of variables, given the pre-squash `u`
    (`mean`, `log_std`, `u`: `[..., D]`)."""
    return gaussian_log_prob(mean, log_std, u) - tanh_log_det_jacobian(u)
