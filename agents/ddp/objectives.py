"""Stock-augmented objectives `E f(c_0 + G)` as pytrees of parameters.

An `Objective` is data, not a closure: a family index, a parameter vector, the initial
stock c_0 and, for CVaR, the level tau. So a population of objectives is one
`Objective` with a leading axis, and `jax.vmap` runs DVI over it.

Families (f applied to `x = c + G`; which of them DP can optimise is the last column):

| family            | f(x)                                   | scale-consistent |
|-------------------|----------------------------------------|------------------|
| identity          | x  (risk-neutral)                      | yes              |
| cvar              | min(x, 0)  (plus outer max over c_0)   | yes              |
| neg_abs           | -|x|  (generate a desired return)      | yes              |
| neg_square        | -x^2  (homeostasis)                    | yes              |
| threshold         | 1{x >= 0}  (reach probability)         | yes              |
| piecewise_linear  | a*min(x-k, 0) + b*max(x-k, 0)          | only if k == 0   |
| exp_utility       | -exp(-lam*x)/lam                       | no               |

Scale-consistent means `f(gamma x) = a f(x) + b` with a > 0, which the greedy rule
`argmax_a E f(c + Z)` needs when gamma < 1. With gamma = 1 every f works.
"""

from __future__ import annotations

import warnings

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

FAMILIES = (
    "identity", "cvar", "neg_abs", "neg_square", "threshold", "piecewise_linear", "exp_utility",
)  # fmt: skip
IDENTITY, CVAR, NEG_ABS, NEG_SQUARE, THRESHOLD, PIECEWISE_LINEAR, EXP_UTILITY = range(7)
NUM_PARAMS = 3
# Families with f(gamma x) = a f(x) + b for every gamma in (0, 1] (piecewise_linear only
# when its kink is at 0, which `needs_gamma_one` checks on the parameters).
_SCALE_CONSISTENT = np.array([True, True, True, True, True, True, False])
# Families for which clipping the stock to [-G_max, -G_min] loses nothing: f is affine
# on each side of 0, so beyond that range only the mean of Z matters (or nothing does).
_HINGE = np.array([True, True, True, False, True, True, False])


@flax.struct.dataclass
class Objective:
    """`E f(c_0 + G)` with f from `FAMILIES`. All fields are arrays (pytree leaves).

    family: int32 `[]`, index into `FAMILIES`.
    params: `[3]` family parameters (piecewise_linear: kink k, slope below a, slope
        above b; exp_utility: lam; unused entries are 0).
    c0: `[]` initial stock, used when `optimise_c0` is False (e.g. `-target`).
    optimise_c0: bool `[]`; True for CVaR: the value is the Rockafellar–Uryasev outer
        max `max_c0 { -c0 + E[min(c0 + G, 0)] / tau }` over the stock grid.
    tau: `[]` CVaR level in (0, 1]; ignored unless `optimise_c0`.
    """

    family: jax.Array
    params: jax.Array
    c0: jax.Array
    optimise_c0: jax.Array
    tau: jax.Array


def _make(family, params=(), c0=0.0, optimise_c0=False, tau=1.0) -> Objective:
    # The default float dtype: float32, or float64 when built under `jax.enable_x64`
    # (so that tau = 0.1 is exactly the float64 0.1 in exact comparisons).
    dtype = jnp.result_type(float)
    p = np.zeros(NUM_PARAMS, np.float64)
    p[: len(params)] = params
    return Objective(
        family=jnp.asarray(family, jnp.int32),
        params=jnp.asarray(p, dtype),
        c0=jnp.asarray(c0, dtype),
        optimise_c0=jnp.asarray(optimise_c0),
        tau=jnp.asarray(tau, dtype),
    )


def identity(c0: float = 0.0) -> Objective:
    """Risk-neutral RL: `f(x) = x`, c_0 = 0."""
    return _make(IDENTITY, c0=c0)


def cvar(tau: float) -> Objective:
    """Lower-tail `CVaR_tau(G)`: `f(x) = min(x, 0)` with c_0 optimised (RU)."""
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"cvar: tau must be in (0, 1], got {tau}.")
    return _make(CVAR, optimise_c0=True, tau=tau)


def expected_shortfall(c0: float) -> Objective:
    """`E min(c_0 + G, 0)` at a given stock (the inner problem of CVaR)."""
    return _make(CVAR, c0=c0)


def target(g: float) -> Objective:
    """Generate a desired return g: `f(x) = -|x|`, c_0 = -g."""
    return _make(NEG_ABS, c0=-g)


def neg_square(set_point: float = 0.0) -> Objective:
    """Homeostatic regulation around a set point: `f(x) = -x^2`, c_0 = -set_point."""
    return _make(NEG_SQUARE, c0=-set_point)


def threshold(g: float) -> Objective:
    """Reach probability `P(G >= g)`: `f(x) = 1{x >= 0}`, c_0 = -g."""
    return _make(THRESHOLD, c0=-g)


def piecewise_linear(
    kink: float = 0.0, slope_below: float = 1.0, slope_above: float = 0.0, c0: float = 0.0
) -> Objective:
    """`f(x) = slope_below*min(x-kink, 0) + slope_above*max(x-kink, 0)`; concave when
    slope_below >= slope_above. Needs gamma = 1 unless kink == 0."""
    return _make(PIECEWISE_LINEAR, (kink, slope_below, slope_above), c0=c0)


def exp_utility(lam: float = 1.0, c0: float = 0.0) -> Objective:
    """Exponential utility `f(x) = -exp(-lam x)/lam` (lam > 0: risk-averse). Needs gamma = 1."""
    if lam <= 0:
        raise ValueError(f"exp_utility: lam must be > 0, got {lam}.")
    return _make(EXP_UTILITY, (lam,), c0=c0)


def stack(objectives) -> Objective:
    """A population `Objective` with a leading axis `[P]` from a list of objectives."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *objectives)


def utility(obj: Objective, x: jax.Array) -> jax.Array:
    """`f(x)` elementwise for one (unbatched) objective; x any shape."""
    k, a, b = obj.params[0], obj.params[1], obj.params[2]
    branches = (
        lambda x: x,
        lambda x: jnp.minimum(x, 0.0),
        lambda x: -jnp.abs(x),
        lambda x: -(x**2),
        lambda x: (x >= 0).astype(x.dtype),
        lambda x: a * jnp.minimum(x - k, 0.0) + b * jnp.maximum(x - k, 0.0),
        # params[0] is lam for this family.
        lambda x: -jnp.exp(-k * x) / k,
    )
    return jax.lax.switch(obj.family, branches, x)


def lipschitz(obj: Objective) -> float:
    """Lipschitz constant L of f (host-side, numpy), inf for -x^2, exp and threshold;
    enters the DVI bound `2 L gamma^n R_max / (1 - gamma)`."""
    fam = np.asarray(obj.family)
    p = np.asarray(obj.params)
    table = np.array([1.0, 1.0, 1.0, np.inf, np.inf, 0.0, np.inf])
    pl = np.maximum(np.abs(p[..., 1]), np.abs(p[..., 2]))
    return np.where(fam == PIECEWISE_LINEAR, pl, table[fam])


def needs_gamma_one(obj: Objective) -> np.ndarray:
    """Host-side: True where f is not scale-consistent, so only gamma = 1 is exact; the
    objective's batch shape (a scalar for one objective)."""
    fam = np.asarray(obj.family)
    kink = np.asarray(obj.params)[..., 0]
    consistent = _SCALE_CONSISTENT[fam] & ~((fam == PIECEWISE_LINEAR) & (kink != 0))
    return ~consistent


def is_hinge(obj: Objective) -> np.ndarray:
    """Host-side: True where clipping the stock to the safe range is lossless; the
    objective's batch shape (a scalar for one objective)."""
    fam = np.asarray(obj.family)
    kink = np.asarray(obj.params)[..., 0]
    return _HINGE[fam] & ~((fam == PIECEWISE_LINEAR) & (kink != 0))


def check_gamma(obj: Objective, gamma) -> None:
    """Warn when an objective that needs gamma = 1 is used with gamma < 1 (host-side;
    skipped for traced values)."""
    try:
        g = np.asarray(gamma, np.float64)
        bad = needs_gamma_one(obj)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    if np.any(bad & (g < 1.0)):
        names = sorted({FAMILIES[i] for i in np.atleast_1d(np.asarray(obj.family))[np.atleast_1d(bad)]})
        warnings.warn(
            f"objective {names} is not scale-consistent (f(gamma x) != a f(x) + b), so "
            f"stock-augmented DP is only exact for it with gamma = 1; got gamma={float(np.min(g))}. "
            "Use gamma=1 (finite horizon), or a family such as cvar, neg_abs, threshold.",
            stacklevel=3,
        )


def name(obj: Objective) -> str:
    """Family name of an unbatched objective (host-side)."""
    return FAMILIES[int(obj.family)]
