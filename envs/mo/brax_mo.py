"""Multi-objective brax locomotion: MO-HalfCheetah, MO-Hopper (2 and 3 objectives) and
MO-Ant (2 and 3 objectives), after MO-Gymnasium's v5 definitions.

| name | objectives |
|---|---|
| halfcheetah-2d | `[w_f v_x, -Σa²]` |
| hopper-2d | `[w_f v_x + h - c, 10 (z - z0) + h - c]` |
| hopper-3d | `[w_f v_x + h, 10 (z - z0) + h, -Σa²]` |
| ant-2d | `[v_x + h - c - k, v_y + h - c - k]` |
| ant-3d | `[v_x + h - k, v_y + h - k, -Σa²]` |

with brax's own terms from `state.metrics`: `w_f v_x` its forward reward, `h` its
healthy reward, `c = w_c Σa²` its control cost, `k` the ant's contact cost, `z` the
torso height and `z0` its initial height. Summing the objectives with `scalar_weights`
reproduces brax's single-objective reward exactly (tested), e.g. `(1, w_c)` for
HalfCheetah, where `w_c` is brax's `ctrl_cost_weight`.

These are brax's dynamics and reward scales, not MuJoCo's: hypervolumes are not
comparable to the MO-Gymnasium numbers in papers. No Pareto front is known; each env
pins the reference point (-100 per objective, as C-MORL's MuJoCo tables) and the
expected-utility weight set in `mo_spec`, with gamma 0.99.

Not in the `rlx/` registry yet: make them with `make_mo_brax(name, ...)`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rlx.envs.brax_adapter import BraxEnv, make_brax
from rlx.envs.mo.spec import MOSpec, lattice_spec

#: name -> (brax env id, number of objectives)
MO_BRAX = {
    "halfcheetah-2d": ("halfcheetah", 2),
    "hopper-2d": ("hopper", 2),
    "hopper-3d": ("hopper", 3),
    "ant-2d": ("ant", 2),
    "ant-3d": ("ant", 3),
}


class MOBraxEnv(BraxEnv):
    """A brax env on rlx's interface whose reward is the objective vector `[d]`."""

    def __init__(self, inner: BraxEnv, name: str):
        super().__init__(inner.brax_env, inner.env_id, inner.backend, inner.episode_length, inner.reset_mode)
        if name not in MO_BRAX:
            raise ValueError(f"unknown MO brax env {name!r}; accepted values are {', '.join(MO_BRAX)}.")
        self.mo_name = name
        self.reward_dim = MO_BRAX[name][1]
        self.reward_low = np.full(self.reward_dim, -np.inf)
        self.reward_high = np.full(self.reward_dim, np.inf)
        self.mo_spec: MOSpec = lattice_spec(
            ref_point=(-100.0,) * self.reward_dim, divisions=100 if self.reward_dim == 2 else 20, gamma=0.99
        )
        self.pareto_front_exact = False
        raw = self.brax_env
        self._ctrl_w = float(raw._ctrl_cost_weight)
        self._z0 = float(np.asarray(raw.sys.init_q)[1]) if self.env_id == "hopper" else 0.0

    @property
    def name(self) -> str:
        return f"brax/mo-{self.mo_name}"

    @property
    def scalar_weights(self) -> np.ndarray:
        """`[d]`: the weights with which the objectives sum to brax's own reward."""
        if self.reward_dim == 2 and self.env_id == "halfcheetah":
            return np.array([1.0, self._ctrl_w])
        if self.reward_dim == 2:
            return np.array([1.0, 0.0])
        return np.array([1.0, 0.0, self._ctrl_w])

    def pareto_front(self, gamma: float) -> np.ndarray:
        raise NotImplementedError(f"{self.name}: no Pareto front is known (pareto_front_exact is False).")

    def objectives(self, s: Any, action: jax.Array) -> jax.Array:
        """The objective vector `[d]` of the brax step that produced state `s`."""
        m = s.metrics
        energy = -jnp.sum(jnp.square(action))
        if self.env_id == "halfcheetah":
            return jnp.stack([m["reward_run"], energy])
        if self.env_id == "hopper":
            h, c = m["reward_healthy"], m["reward_ctrl"]  # reward_ctrl is -w_c Σa²
            height = 10.0 * (s.pipeline_state.x.pos[0, 2] - self._z0)
            if self.reward_dim == 2:
                return jnp.stack([m["reward_forward"] + h + c, height + h + c])
            return jnp.stack([m["reward_forward"] + h, height + h, energy])
        h, c, k = m["reward_survive"], m["reward_ctrl"], m["reward_contact"]
        if self.reward_dim == 2:
            return jnp.stack([m["x_velocity"] + h + c + k, m["y_velocity"] + h + c + k])
        return jnp.stack([m["x_velocity"] + h + k, m["y_velocity"] + h + k, energy])

    def reward(self, s: Any, action: jax.Array) -> tuple[jax.Array, dict]:
        """The objective vector `[d]`; brax's scalar reward goes to `info["scalar_reward"]`."""
        return self.objectives(s, action).astype(jnp.float32), {"scalar_reward": s.reward}


def make_mo_brax(name: str, backend: str = "generalized", episode_length: int = 1000, reset_mode: str = "fresh",
                 **kwargs) -> tuple[MOBraxEnv, None]:  # fmt: skip
    """Build a multi-objective brax env: `name` is one of `MO_BRAX`."""
    if name not in MO_BRAX:
        raise ValueError(f"unknown MO brax env {name!r}; accepted values are {', '.join(MO_BRAX)}.")
    inner, params = make_brax(MO_BRAX[name][0], backend=backend, episode_length=episode_length,
                              reset_mode=reset_mode, **kwargs)  # fmt: skip
    return MOBraxEnv(inner, name), params
