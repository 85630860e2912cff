"""Small flax.linen networks: MLP torsos, actor heads, critics (scalar or vector)."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "silu": nn.silu, "elu": nn.elu}


KERNEL_INITS = ("orthogonal", "lecun_uniform")


def _dense(features: int, scale: float, init: str = "orthogonal") -> nn.Dense:
    """A dense layer with zero bias. `orthogonal` (scaled by `scale`) is the PPO
    convention; `lecun_uniform` ignores `scale`, as brax's networks do."""
    if init == "orthogonal":
        kernel = nn.initializers.orthogonal(scale)
    elif init == "lecun_uniform":
        kernel = nn.initializers.lecun_uniform()
    else:
        raise ValueError(f"kernel init {init!r} is invalid: accepted values are {', '.join(KERNEL_INITS)}.")
    return nn.Dense(features, kernel_init=kernel, bias_init=nn.initializers.zeros)


class MLP(nn.Module):
    """Flattens the input, then `hidden` dense layers (orthogonal init by default). `[..., *obs] -> [..., H]`."""

    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"
    layer_norm: bool = False
    kernel_init: str = "orthogonal"

    @nn.compact
    def __call__(self, x: jax.Array, batch_dims: int = 0) -> jax.Array:
        x = x.reshape(x.shape[:batch_dims] + (-1,)).astype(jnp.float32)
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = _dense(width, np.sqrt(2.0), self.kernel_init)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        return x


class CategoricalActor(nn.Module):
    """obs -> logits `[..., A]`."""

    num_actions: int
    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"
    kernel_init: str = "orthogonal"

    @nn.compact
    def __call__(self, obs: jax.Array, batch_dims: int = 0) -> jax.Array:
        h = MLP(self.hidden, self.activation, kernel_init=self.kernel_init)(obs, batch_dims)
        return _dense(self.num_actions, 0.01, self.kernel_init)(h)


class GaussianActor(nn.Module):
    """obs -> (mean `[..., D]`, log_std `[..., D]`).

    With `state_dependent_std` the scale is a head of the network (as in brax);
    otherwise it is one learned vector shared by all states (as in PureJaxRL).
    """

    action_dim: int
    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"
    state_dependent_std: bool = False
    init_log_std: float = 0.0
    kernel_init: str = "orthogonal"

    @nn.compact
    def __call__(self, obs: jax.Array, batch_dims: int = 0):
        h = MLP(self.hidden, self.activation, kernel_init=self.kernel_init)(obs, batch_dims)
        mean = _dense(self.action_dim, 0.01, self.kernel_init)(h)
        if self.state_dependent_std:
            raw = _dense(self.action_dim, 0.01, self.kernel_init)(h)
            # softplus keeps the scale positive; the floor avoids a collapse to 0.
            std = jax.nn.softplus(raw + np.log(np.expm1(np.exp(self.init_log_std)))) + 1e-3
            log_std = jnp.log(std)
        else:
            log_std = self.param(
                "log_std", nn.initializers.constant(self.init_log_std), (self.action_dim,)
            )
            log_std = jnp.broadcast_to(log_std, mean.shape)
        return mean, log_std


class Critic(nn.Module):
    """obs -> value `[...]`, or `[..., reward_dim]` for a vector critic."""

    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"
    reward_dim: int | None = None
    kernel_init: str = "orthogonal"

    @nn.compact
    def __call__(self, obs: jax.Array, batch_dims: int = 0) -> jax.Array:
        h = MLP(self.hidden, self.activation, kernel_init=self.kernel_init)(obs, batch_dims)
        out = _dense(self.reward_dim or 1, 1.0, self.kernel_init)(h)
        return out if self.reward_dim else out[..., 0]


class QCritic(nn.Module):
    """(obs, action) -> Q(s, a) `[...]`, for continuous actions (SAC, TD3).

    The observation is flattened and concatenated with the action before the MLP.
    Twin or ensemble critics stack params along a leading axis (`ensemble_init`).
    """

    hidden: Sequence[int] = (256, 256)
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array, batch_dims: int = 0) -> jax.Array:
        x = obs.reshape(obs.shape[:batch_dims] + (-1,)).astype(jnp.float32)
        a = action.reshape(action.shape[:batch_dims] + (-1,)).astype(jnp.float32)
        h = MLP(self.hidden, self.activation)(jnp.concatenate([x, a], -1), batch_dims)
        return _dense(1, 1.0)(h)[..., 0]


class DiscreteQNetwork(nn.Module):
    """obs -> Q-values `[..., A]`, or per-action distribution outputs `[..., A, M]`
    when `num_atoms` is set (C51 logits over a fixed support, or QR-DQN quantiles)."""

    num_actions: int
    hidden: Sequence[int] = (64, 64)
    activation: str = "relu"
    num_atoms: int | None = None

    @nn.compact
    def __call__(self, obs: jax.Array, batch_dims: int = 0) -> jax.Array:
        h = MLP(self.hidden, self.activation)(obs, batch_dims)
        out = _dense(self.num_actions * (self.num_atoms or 1), 1.0)(h)
        if self.num_atoms:
            return out.reshape(out.shape[:-1] + (self.num_actions, self.num_atoms))
        return out


def ensemble_init(module: nn.Module, key: jax.Array, size: int, *args) -> dict:
    """Params of `size` independently initialised copies of `module`, stacked on axis 0
    (every leaf `[size, ...]`)."""
    return jax.vmap(lambda k: module.init(k, *args))(jax.random.split(key, size))


def ensemble_apply(module: nn.Module, params: dict, *args) -> jax.Array:
    """Apply every member of stacked `params` to the same inputs: outputs `[size, ...]`."""
    return jax.vmap(lambda p: module.apply(p, *args))(params)
