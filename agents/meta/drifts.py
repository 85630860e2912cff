"""Drift functions for mirror-learning policy updates (PPO, DPO, LPO, TA-LPO).

A policy update maximises `mean(r·A - D(r, A))` with `r = π_new(a|s) / π_old(a|s)` and
A the (normalised) advantage. A valid drift satisfies, for every A:

    D >= 0,   D(1, A) = 0,   ∂D/∂r (1, A) = 0.

Kinds (`KINDS`), each `drift(kind, params, ratio, adv, clip_eps, progress) -> [N]`:

- `ppo`: ReLU((r - clip(r, 1-ε, 1+ε))·A). No parameters (ε is PPO's `clip_eps`).
- `dpo`: the closed form of Lu et al. 2022 (eq. 11),
      A >= 0: ReLU((r-1)·A - α·tanh((r-1)·A/α)),
      A <  0: ReLU(log(r)·A - β·tanh(log(r)·A/β)),   α = 2, β = 0.6.
  Parameters `{"alpha", "beta"}` (traced, so they can be meta-learned too).
- `lpo`: a bias-free MLP f over the 8 features of (r, A) (`features`),
      D = ReLU(f(x) - δ),   δ = 1e-4.
  At r = 1 every feature is 0, so f = 0 (no biases, tanh(0) = 0) and f - δ < 0 in a
  neighbourhood of r = 1: D and ∂D/∂r are both exactly 0 there.
- `lpo_ppo_init`: the same network added to PPO's drift p,
      D = p + [ReLU(f + p - δ) - ReLU(p - δ)]  ( = ReLU(f + p - δ) + min(p, δ) ).
  The published form is ReLU(f + p - δ); it differs from ours by min(p, δ) <= 1e-4.
  We add that term back so that an all-zero head gives PPO's loss and gradient exactly
  (bitwise: the bracket is x - x = 0), which is the test that catches the published
  sign bug (`- ReLU(p)`). It keeps every constraint: p = 0 around r = 1.
- `ta_lpo`, `ta_lpo_ppo_init`: TA-LPO (Jackson et al. 2024), the features become
  `[x, (n/N)·x]` (16 inputs) with n/N the training progress in [0, 1].

LPO parameters are `{"w1": [F, H], "w2": [H, 1]}`: Dense(H, no bias) -> tanh ->
Dense(1, no bias). With H = 128 that is 1,152 parameters (LPO) and 2,176 (TA-LPO).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from rlx.agents import ppo
from rlx.agents.ppo import PPOConfig, ppo_drift  # noqa: F401  (PPOConfig: the registry entry "dpo")
from rlx.types import Agent

KINDS = ("ppo", "dpo", "lpo", "lpo_ppo_init", "ta_lpo", "ta_lpo_ppo_init")
LEARNED = ("lpo", "lpo_ppo_init", "ta_lpo", "ta_lpo_ppo_init")
DELTA = 1e-4  # the LPO offset that makes D ≡ 0 near r = 1
DPO_DEFAULTS = {"alpha": 2.0, "beta": 0.6}
NUM_FEATURES = 8


def dpo_drift(ratio: jax.Array, adv: jax.Array, alpha: Any = 2.0, beta: Any = 0.6) -> jax.Array:
    """DPO's closed-form drift (Lu et al. 2022, eq. 11). `ratio, adv: [N]` -> `[N]`."""
    pos = (ratio - 1.0) * adv
    neg = jnp.log(ratio) * adv
    d_pos = pos - alpha * jnp.tanh(pos / alpha)
    d_neg = neg - beta * jnp.tanh(neg / beta)
    return jax.nn.relu(jnp.where(adv >= 0, d_pos, d_neg))


def features(ratio: jax.Array, adv: jax.Array) -> jax.Array:
    """The 8 LPO inputs `[r-1, (r-1)², log r, (log r)², A(r-1), A(r-1)², A log r, A (log r)²]`.

    `ratio, adv: [N]` -> `[N, 8]`. Every feature is exactly 0 at r = 1.
    """
    d = ratio - 1.0
    lr = jnp.log(ratio)
    base = jnp.stack([d, d * d, lr, lr * lr], -1)
    return jnp.concatenate([base, adv[..., None] * base], -1)


def num_inputs(kind: str) -> int:
    """Input width of the learned drift network for `kind`."""
    return 2 * NUM_FEATURES if kind.startswith("ta_") else NUM_FEATURES


def lpo_network(params: dict, x: jax.Array) -> jax.Array:
    """f(x) = tanh(x W1) W2, no biases. `x: [N, F]` -> `[N]`."""
    return (jnp.tanh(x @ params["w1"]) @ params["w2"])[..., 0]


def drift(
    kind: str, params: Any, ratio: jax.Array, adv: jax.Array, clip_eps: Any = 0.2, progress: Any = 0.0
) -> jax.Array:
    """D(r, A) of `kind` with `params`. `ratio, adv: [N]`; `progress` = n/N in [0, 1]."""
    if kind == "ppo":
        return ppo_drift(ratio, adv, clip_eps)
    if kind == "dpo":
        p = DPO_DEFAULTS if params is None else params
        return dpo_drift(ratio, adv, p["alpha"], p["beta"])
    if kind not in LEARNED:
        raise ValueError(f"drift kind {kind!r} is invalid: accepted values are {', '.join(KINDS)}.")
    x = features(ratio, adv)
    if kind.startswith("ta_"):
        x = jnp.concatenate([x, progress * x], -1)
    f = lpo_network(params, x)
    if not kind.endswith("_ppo_init"):
        return jax.nn.relu(f - DELTA)
    p = ppo_drift(ratio, adv, clip_eps)
    # p + (ReLU(f+p-δ) - ReLU(p-δ)): bitwise p (and p's gradient) when f ≡ 0.
    return p + (jax.nn.relu(f + p - DELTA) - jax.nn.relu(p - DELTA))


def init_params(
    kind: str, key: jax.Array | None = None, hidden: int = 128, scale: float = 1.0, zero_head: bool = False
) -> Any:
    """Default parameters of a drift.

    `ppo`: None. `dpo`: `{"alpha": 2.0, "beta": 0.6}`. Learned kinds: `{"w1": [F, H],
    "w2": [H, 1]}`, LeCun-normal times `scale` (scale 0, or key None, gives zeros; with
    PPO-init a zero network is exactly PPO).

    `zero_head`: random `w1`, zero `w2`. f ≡ 0 as with all zeros (D ≡ 0, or exactly PPO
    with PPO-init), but it is the better ES start: at all zeros f(-w1, -w2) = f(w1, w2),
    so every antithetic pair θ ± σz is the same drift, ties in fitness, and the first
    generation's update is tie-breaking noise. With `w1` random, ±σz on `w2` are
    opposite drifts to first order.
    """
    if kind == "ppo":
        return None
    if kind == "dpo":
        return {k: jnp.asarray(v, jnp.float32) for k, v in DPO_DEFAULTS.items()}
    if kind not in LEARNED:
        raise ValueError(f"drift kind {kind!r} is invalid: accepted values are {', '.join(KINDS)}.")
    f = num_inputs(kind)
    if key is None or scale == 0:
        return {"w1": jnp.zeros((f, hidden)), "w2": jnp.zeros((hidden, 1))}
    k1, k2 = jax.random.split(key)
    if zero_head:
        return {"w1": scale * jax.random.normal(k1, (f, hidden)) / jnp.sqrt(f), "w2": jnp.zeros((hidden, 1))}
    return {
        "w1": scale * jax.random.normal(k1, (f, hidden)) / jnp.sqrt(f),
        "w2": scale * jax.random.normal(k2, (hidden, 1)) / jnp.sqrt(hidden),
    }


def num_params(params: Any) -> int:
    """The number of scalars in a parameter pytree."""
    return sum(int(x.size) for x in jax.tree.leaves(params))


def check_params(kind: str, params: Any, owner: str = "drift_params") -> None:
    """Raise a ValueError unless `params` fits `kind`. Leading (population) axes are allowed.

    A learned drift must be exactly `{"w1": [..., F, H], "w2": [..., H, 1]}`: any other
    leaf, a bias above all, would make f(x) nonzero at r = 1 and break D(1, A) = 0.
    """
    if kind not in KINDS:
        raise ValueError(f"drift = {kind!r} is invalid: accepted values are {', '.join(KINDS)}.")
    if kind == "ppo":
        if params is not None:
            raise ValueError(f"{owner} must be None for drift = 'ppo' (PPO's drift uses clip_eps); got {_describe(params)}.")
        return
    if kind == "dpo":
        if params is None:
            return
        if not isinstance(params, dict) or set(params) != {"alpha", "beta"}:
            raise ValueError(f"{owner} for drift = 'dpo' must be None or {{'alpha', 'beta'}}; got {_describe(params)}.")
        return
    want = num_inputs(kind)
    if params is None:
        raise ValueError(
            f"{owner} is None but drift = {kind!r} needs network weights: "
            f"use rlx.agents.meta.drifts.init_params({kind!r}, key)."
        )
    if not isinstance(params, dict) or set(params) != {"w1", "w2"}:
        raise ValueError(
            f"{owner} for drift = {kind!r} must be {{'w1': [{want}, H], 'w2': [H, 1]}} with no biases "
            f"(a bias makes D(1, A) != 0 and breaks the drift constraints); got {_describe(params)}."
        )
    w1, w2 = jnp.shape(params["w1"]), jnp.shape(params["w2"])
    if len(w1) < 2 or len(w2) < 2 or w1[-2] != want or w2[-1] != 1 or w1[-1] != w2[-2]:
        raise ValueError(
            f"{owner} for drift = {kind!r} has shapes w1 {tuple(w1)}, w2 {tuple(w2)}; "
            f"expected w1 [..., {want}, H] and w2 [..., H, 1]."
        )


ppo.DRIFT_CHECKS.update(dict.fromkeys(KINDS, check_params))


def _describe(tree: Any) -> str:
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in tree.items()) + "}"
    shape = getattr(tree, "shape", None)
    return f"array{tuple(shape)}" if shape is not None else repr(tree)


def make_agent(env: Any, cfg: ppo.PPOConfig) -> Agent:
    """PPO with the drift `cfg.drift` (any of `KINDS`) on `cfg.drift_params`, injected
    into `rlx.agents.ppo.make_agent`."""
    check_params(cfg.drift, cfg.drift_params, "PPOConfig.drift_params")
    kind = cfg.drift

    def injected(ratio, adv, c, progress):
        return drift(kind, c.drift_params, ratio, adv, c.clip_eps, progress)

    return ppo.make_agent(env, cfg, drift=None if kind == "ppo" else injected)



def dpo_config(**overrides: Any) -> ppo.PPOConfig:
    """PPO's defaults with DPO's drift (α = 2, β = 0.6 unless `drift_params` is given)."""
    return ppo.PPOConfig(**{"drift": "dpo", **overrides})
