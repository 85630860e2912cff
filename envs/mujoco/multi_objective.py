"""Multi-objective MuJoCo tasks as MO-Gymnasium 1.3.2 defines them (its `mujoco/*_v5.py`),
on the gymnasium v5 tasks of `rlx.envs.mujoco.tasks`.

| name | reward `[d]` |
|---|---|
| mo-hopper-v5 | `[v_x, 10 dz, -Σa²] + h` |
| mo-hopper-2obj-v5 | `[v_x, 10 dz] - c + h` |
| mo-halfcheetah-v5 | `[v_x, -Σa²]` |
| mo-walker2d-v5 | `[v_x, -Σa²] + h` |
| mo-ant-v5 | `[v_x, v_y, -Σa²] + h - k` |
| mo-ant-2obj-v5 | `[v_x, v_y] - c + h - k` |
| mo-swimmer-v5 | `[v_x, -Σa²]` |

`v_x`, `v_y`: gymnasium's `x_velocity` and `y_velocity` (unweighted); `dz`: its
`z_distance_from_origin`; `h`: its `reward_survive`; `c = w_c Σa²` its control cost
(`-reward_ctrl`); `k` the Ant's contact cost (`-reward_contact`). MO-Gymnasium adds `h`
(and the Ant's `-k`) to every objective, the energy one too. MO-Gymnasium computes
`-Σa²` as `reward_ctrl / ctrl_cost_weight`; here it is the sum itself. gymnasium's scalar
reward is in `info["scalar_reward"]`.

No Pareto front is known. `mo_spec` pins the hypervolume reference point at -100 per
objective (as C-MORL's MuJoCo runs do), a Das-Dennis weight set and gamma 0.99.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rlx.envs.mo.spec import MOSpec, lattice_spec
from rlx.envs.mujoco.tasks import MujocoEnv, make_task

#: name -> (gymnasium v5 task, number of objectives)
MO_TASKS = {
    "mo-hopper-v5": ("Hopper-v5", 3),
    "mo-hopper-2obj-v5": ("Hopper-v5", 2),
    "mo-halfcheetah-v5": ("HalfCheetah-v5", 2),
    "mo-walker2d-v5": ("Walker2d-v5", 2),
    "mo-ant-v5": ("Ant-v5", 3),
    "mo-ant-2obj-v5": ("Ant-v5", 2),
    "mo-swimmer-v5": ("Swimmer-v5", 2),
}


def objectives(task: str, reward_dim: int, info: dict, action: jax.Array) -> jax.Array:
    """MO-Gymnasium's vector reward `[reward_dim]` from the task's step `info` (scalars) and `action` `[nu]`."""
    energy = -jnp.sum(jnp.square(action))
    if task in ("HalfCheetah-v5", "Swimmer-v5"):
        return jnp.stack([info["x_velocity"], energy])
    if task == "Walker2d-v5":
        return jnp.stack([info["x_velocity"], energy]) + info["reward_survive"]
    if task == "Hopper-v5":
        moves = [info["x_velocity"], 10.0 * info["z_distance_from_origin"]]
        vec = jnp.stack(moves + [energy]) if reward_dim == 3 else jnp.stack(moves) + info["reward_ctrl"]
        return vec + info["reward_survive"]
    moves = [info["x_velocity"], info["y_velocity"]]  # the ant
    vec = jnp.stack(moves + [energy]) if reward_dim == 3 else jnp.stack(moves) + info["reward_ctrl"]
    return vec + info["reward_survive"] + info["reward_contact"]


class MOMujocoEnv:
    """A gymnasium v5 task whose reward is MO-Gymnasium's objective vector `[reward_dim]`;
    everything else (observation, termination, params, reset) is the task's."""

    def __init__(self, inner: MujocoEnv, mo_name: str):
        self.inner = inner
        self.mo_name = mo_name
        self.task, self.reward_dim = MO_TASKS[mo_name]
        self.reward_low = np.full(self.reward_dim, -np.inf)
        self.reward_high = np.full(self.reward_dim, np.inf)
        self.mo_spec: MOSpec = lattice_spec(
            ref_point=(-100.0,) * self.reward_dim, divisions=100 if self.reward_dim == 2 else 20, gamma=0.99
        )
        self.pareto_front_exact = False

    @property
    def name(self) -> str:
        return f"mujoco/{self.mo_name}"

    @property
    def default_params(self) -> Any:
        return self.inner.default_params

    @property
    def episode_length(self) -> int:
        """The default time limit: 1000 steps."""
        return self.inner.episode_length

    def observation_space(self, params: Any = None):
        return self.inner.observation_space(params)

    def action_space(self, params: Any = None):
        return self.inner.action_space(params)

    def pareto_front(self, gamma: float) -> np.ndarray:
        raise NotImplementedError(f"{self.name}: no Pareto front is known (pareto_front_exact is False).")

    def reset(self, key: jax.Array, params: Any = None):
        return self.inner.reset(key, params)

    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None):
        obs, state, reward, terminated, truncated, info = self.inner.step(key, state, action, params)
        vec = objectives(self.task, self.reward_dim, info, jnp.asarray(action, jnp.float32))
        info = {**info, "scalar_reward": reward}
        return obs, state, vec.astype(jnp.float32), terminated, truncated, info


def make_mo_task(mo_name: str, **kwargs: Any) -> tuple[MOMujocoEnv, Any]:
    """`mujoco/MO_NAME` (one of `MO_TASKS`) and its params: keyword arguments as for its task."""
    env, params = make_task(MO_TASKS[mo_name][0], **kwargs)
    return MOMujocoEnv(env, mo_name), params
