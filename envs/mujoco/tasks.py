"""The seven MuJoCo locomotion and balance tasks of gymnasium v5, stepped by `mujoco.mjx`.

Each task builds gymnasium 1.3's own XML model (from the installed gymnasium) and keeps
gymnasium v5's semantics: the same observation, reward terms (under gymnasium's `info`
names), termination, reset noise and frame skip. `MujocoEnv` holds what they share:
the model, the reset, and the physics step, `frame_skip` calls of `mjx.step` in a
`lax.fori_loop`. A subclass says what it observes and how it is rewarded.

What gymnasium does, and so what these do:
- `step` writes the action into `ctrl` unclipped (MuJoCo clamps it to the actuator's
  `ctrlrange`; the control cost uses the raw action) and calls `mj_step` `frame_skip`
  times. After `mj_step` the positions and velocities are new, but quantities that
  `mj_forward` derives from them (body and site positions, constraint forces) are those
  of the last substep's start. Rewards read body positions from there, as gymnasium does.
- Ant v5 also calls `mj_rnePostConstraint` once after the substeps (for `cfrc_ext`, the
  external contact forces in the observation and the contact cost); reset does not, so
  its first observation's contact forces are zeros.
- reset starts from fresh data, adds noise to `qpos0` and to zero velocities, and runs
  `mj_forward`, which leaves the noisy (unnormalized) quaternion of Ant's free joint in
  qpos and so in the first observation.

Where MJX and MuJoCo C differ: for a capsule steeper than 60 degrees to the floor, MJX's
contact frame is a fixed axis, while MuJoCo C aligns it with the capsule; with pyramidal
friction cones the contact forces then differ (Ant's feet meet this most).
tests/test_mujoco.py measures it.

Positions and velocities are float32 unless the env is built and run under
`jax.enable_x64(True)`, where the simulation is float64; observations, rewards and
`info` are float32 either way.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlx.envs.core import Box, Environment, as_tuple

EXTRA = "mujoco"
INF = math.inf


@struct.dataclass
class MujocoState:
    """data: the `mjx.Data` of the simulation; time: steps since the reset (int32 scalar)."""

    data: Any
    time: jax.Array


# -- traced params, one class per task: gymnasium v5's keyword arguments (those that change
# -- no shape), with its defaults, and the time limit of its registration.
@struct.dataclass
class HopperParams:
    """Hopper-v5's weights, healthy ranges ((low, high), open) and reset noise."""

    forward_reward_weight: float = 1.0
    ctrl_cost_weight: float = 1e-3
    healthy_reward: float = 1.0
    terminate_when_unhealthy: bool = True
    healthy_state_range: tuple = (-100.0, 100.0)
    healthy_z_range: tuple = (0.7, INF)
    healthy_angle_range: tuple = (-0.2, 0.2)
    reset_noise_scale: float = 5e-3
    max_steps_in_episode: int = 1000


@struct.dataclass
class Walker2dParams:
    """Walker2d-v5's weights, healthy ranges ((low, high), open) and reset noise."""

    forward_reward_weight: float = 1.0
    ctrl_cost_weight: float = 1e-3
    healthy_reward: float = 1.0
    terminate_when_unhealthy: bool = True
    healthy_z_range: tuple = (0.8, 2.0)
    healthy_angle_range: tuple = (-1.0, 1.0)
    reset_noise_scale: float = 5e-3
    max_steps_in_episode: int = 1000


@struct.dataclass
class HalfCheetahParams:
    """HalfCheetah-v5's weights and reset noise."""

    forward_reward_weight: float = 1.0
    ctrl_cost_weight: float = 0.1
    reset_noise_scale: float = 0.1
    max_steps_in_episode: int = 1000


@struct.dataclass
class SwimmerParams:
    """Swimmer-v5's weights and reset noise."""

    forward_reward_weight: float = 1.0
    ctrl_cost_weight: float = 1e-4
    reset_noise_scale: float = 0.1
    max_steps_in_episode: int = 1000


@struct.dataclass
class AntParams:
    """Ant-v5's weights, healthy z range ([low, high], closed), contact force clip and reset noise."""

    forward_reward_weight: float = 1.0
    ctrl_cost_weight: float = 0.5
    contact_cost_weight: float = 5e-4
    healthy_reward: float = 1.0
    terminate_when_unhealthy: bool = True
    healthy_z_range: tuple = (0.2, 1.0)
    contact_force_range: tuple = (-1.0, 1.0)
    reset_noise_scale: float = 0.1
    max_steps_in_episode: int = 1000


@struct.dataclass
class InvertedPendulumParams:
    """InvertedPendulum-v5's reset noise."""

    reset_noise_scale: float = 0.01
    max_steps_in_episode: int = 1000


@struct.dataclass
class InvertedDoublePendulumParams:
    """InvertedDoublePendulum-v5's alive bonus and reset noise."""

    healthy_reward: float = 10.0
    reset_noise_scale: float = 0.1
    max_steps_in_episode: int = 1000


def import_mujoco(name: str) -> tuple[Any, Any, str]:
    """(`mujoco`, `mujoco.mjx`, gymnasium's folder of MuJoCo XML models) for env `name`; a
    one-line EnvSuiteMissingError naming the `mujoco` extra when a package is missing."""
    import contextlib
    import io

    from rlx.envs.registry import import_suite

    gymnasium = import_suite("gymnasium", EXTRA, name)
    mujoco = import_suite("mujoco", EXTRA, name)
    # mjx prints that it found no warp (its optional GPU backend); it runs without it.
    with contextlib.redirect_stdout(io.StringIO()):
        mjx = import_suite("mujoco.mjx", EXTRA, name)
    return mujoco, mjx, os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets")


class MujocoEnv(Environment):
    """A gymnasium v5 MuJoCo task on MJX. Subclasses set the class fields, `observe` and `outcome`.

    Options (static: they change shapes or the compiled loop): `frame_skip`, and
    `exclude_current_positions_from_observation` where the task has it.
    """

    family = "mujoco"
    env_id: ClassVar[str]
    xml_file: ClassVar[str]
    params_class: ClassVar[type]
    default_frame_skip: ClassVar[int]
    #: gymnasium draws the initial velocities uniformly in [-scale, scale) or as scale * N(0, 1)
    qvel_noise: ClassVar[str] = "uniform"
    #: how many leading qpos entries exclude_current_positions_from_observation drops (0: no such option)
    excluded_positions: ClassVar[int] = 0
    #: Ant: compute cfrc_ext (mj_rnePostConstraint) after the substeps
    needs_contact_forces: ClassVar[bool] = False

    def __init__(self, frame_skip: int | None = None, exclude_current_positions_from_observation: bool = True):
        mujoco, mjx, assets = import_mujoco(f"mujoco/{self.env_id}")
        self.frame_skip = self.default_frame_skip if frame_skip is None else int(frame_skip)
        if self.frame_skip < 1:
            raise ValueError(f"mujoco/{self.env_id}: frame_skip = {frame_skip} is invalid: it must be >= 1.")
        self.skip_positions = self.excluded_positions if exclude_current_positions_from_observation else 0
        self.mj_model = mujoco.MjModel.from_xml_path(os.path.join(assets, self.xml_file))
        self.mjx_model = mjx.put_model(self.mj_model)
        self._mjx = mjx
        self._fresh = mjx.make_data(self.mjx_model)  # gymnasium's mj_resetData
        self._params = self.params_class()
        self.init_qpos = np.array(self.mj_model.qpos0)  # `[nq]`
        self.dt = float(self.mj_model.opt.timestep) * self.frame_skip
        low, high = np.asarray(self.mj_model.actuator_ctrlrange, np.float32).T
        self._action_space = Box(as_tuple(low), as_tuple(high), (self.mj_model.nu,))
        obs = jax.eval_shape(lambda: self.observe(self._fresh, self.default_params))
        self._observation_space = Box(-INF, INF, tuple(obs.shape))

    @property
    def name(self) -> str:
        return f"{self.family}/{self.env_id}"

    @property
    def default_params(self) -> Any:
        """The params `make` returned (gymnasium's defaults unless keywords replaced some)."""
        return self._params

    @property
    def episode_length(self) -> int:
        """The default time limit: 1000 steps."""
        return int(self.default_params.max_steps_in_episode)

    def observation_space(self, params: Any = None) -> Box:
        return self._observation_space

    def action_space(self, params: Any = None) -> Box:
        return self._action_space

    # -- what subclasses define ---------------------------------------------------------------------
    def observe(self, data: Any, params: Any) -> jax.Array:
        """The observation `[obs_dim]` of `data`, in the simulation's dtype."""
        raise NotImplementedError

    def outcome(self, before: Any, after: Any, action: jax.Array, params: Any) -> tuple[jax.Array, jax.Array, dict]:
        """(reward, terminated, info) of the step from `before` to `after` (`mjx.Data`):
        scalars, and gymnasium's `info` (its reward terms among them), as scalars."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------------
    def state_from(self, qpos: jax.Array, qvel: jax.Array) -> MujocoState:
        """The state at `qpos` `[nq]`, `qvel` `[nv]` after gymnasium's `set_state` (fresh data, `mj_forward`)."""
        dtype = self._fresh.qpos.dtype
        qpos = jnp.asarray(qpos, dtype)
        data = self._fresh.replace(qpos=qpos, qvel=jnp.asarray(qvel, dtype))
        # mjx's kinematics writes normalized quaternions back into qpos, mj_forward does not:
        # keep the noisy qpos (Ant's first observation shows its unnormalized quaternion).
        data = self._mjx.forward(self.mjx_model, data).replace(qpos=qpos)
        return MujocoState(_same_dtypes(data, self._fresh), jnp.zeros((), jnp.int32))

    def simulate(self, data: Any, action: jax.Array) -> Any:
        """`data` after `frame_skip` physics steps with `ctrl = action` `[nu]`."""
        mjx, model = self._mjx, self.mjx_model
        data = data.replace(ctrl=jnp.asarray(action, data.ctrl.dtype).reshape(data.ctrl.shape))
        data = jax.lax.fori_loop(0, self.frame_skip, lambda _, d: _same_dtypes(mjx.step(model, d), d), data)
        return _same_dtypes(mjx.rne_postconstraint(model, data), data) if self.needs_contact_forces else data

    def reset_env(self, key: jax.Array, params: Any) -> tuple[jax.Array, MujocoState]:
        dtype = self._fresh.qpos.dtype
        nq, nv = self.mj_model.nq, self.mj_model.nv
        scale = jnp.asarray(params.reset_noise_scale, dtype)
        k_pos, k_vel = jax.random.split(key)
        qpos = self.init_qpos.astype(dtype) + jax.random.uniform(k_pos, (nq,), dtype, -scale, scale)
        if self.qvel_noise == "normal":
            qvel = scale * jax.random.normal(k_vel, (nv,), dtype)
        else:
            qvel = jax.random.uniform(k_vel, (nv,), dtype, -scale, scale)
        state = self.state_from(qpos, qvel)
        return self.observe(state.data, params).astype(jnp.float32), state

    def step_env(self, key: jax.Array, state: MujocoState, action: jax.Array, params: Any):
        data = self.simulate(state.data, action)
        reward, terminated, info = self.outcome(state.data, data, jnp.asarray(action, data.qpos.dtype), params)
        obs = self.observe(data, params).astype(jnp.float32)
        info = {k: jnp.asarray(v, jnp.float32) for k, v in info.items()}
        next_state = MujocoState(data, state.time + 1)
        return obs, next_state, jnp.asarray(reward, jnp.float32), jnp.asarray(terminated, jnp.bool_), info


def _same_dtypes(new: Any, old: Any) -> Any:
    """`new` with the dtypes of `old`, leaf by leaf: under x64, mjx returns some contact
    indices as int64 that `make_data` made int32, and a loop carry must keep its types."""
    return jax.tree.map(lambda a, b: a.astype(b.dtype), new, old)


def _inside(x: jax.Array, bounds: tuple, closed: bool = False) -> jax.Array:
    """Whether every entry of `x` lies in (low, high), or [low, high] when `closed`."""
    low, high = bounds
    inside = (x >= low) & (x <= high) if closed else (x > low) & (x < high)
    return jnp.all(inside)


def _ctrl_cost(params: Any, action: jax.Array) -> jax.Array:
    return params.ctrl_cost_weight * jnp.sum(jnp.square(action))


class _Planar(MujocoEnv):
    """Hopper and Walker2d: forward along x, alive while healthy, qvel clipped to [-10, 10]
    in the observation."""

    excluded_positions = 1

    def observe(self, data, params):
        return jnp.concatenate([data.qpos[self.skip_positions :], jnp.clip(data.qvel, -10.0, 10.0)])

    def healthy(self, data, params) -> jax.Array:
        z, angle = data.qpos[1], data.qpos[2]
        return _inside(z, params.healthy_z_range) & _inside(angle, params.healthy_angle_range)

    def outcome(self, before, after, action, params):
        x_velocity = (after.qpos[0] - before.qpos[0]) / self.dt
        healthy = self.healthy(after, params)
        forward = params.forward_reward_weight * x_velocity
        survive = healthy * params.healthy_reward
        ctrl = _ctrl_cost(params, action)
        info = {"x_position": after.qpos[0], "z_distance_from_origin": after.qpos[1] - self.init_qpos[1],
                "x_velocity": x_velocity, "reward_forward": forward, "reward_ctrl": -ctrl,
                "reward_survive": survive}  # fmt: skip
        return forward + survive - ctrl, ~healthy & params.terminate_when_unhealthy, info


class Hopper(_Planar):
    """`mujoco/Hopper-v5`: obs `[11]` (qpos without x, clipped qvel), actions `[3]` in [-1, 1]."""

    env_id, xml_file, params_class, default_frame_skip = "Hopper-v5", "hopper.xml", HopperParams, 4

    def healthy(self, data, params):
        # gymnasium: every entry of the state vector (qpos, qvel) past x and z inside the range
        state = jnp.concatenate([data.qpos, data.qvel])[2:]
        return super().healthy(data, params) & _inside(state, params.healthy_state_range)


class Walker2d(_Planar):
    """`mujoco/Walker2d-v5` (the v5 model, both feet with friction 0.9): obs `[17]`, actions `[6]`."""

    env_id, xml_file, params_class, default_frame_skip = "Walker2d-v5", "walker2d_v5.xml", Walker2dParams, 4


class _Forward(MujocoEnv):
    """HalfCheetah and Swimmer: forward along x, no termination, observed velocities unclipped."""

    def observe(self, data, params):
        return jnp.concatenate([data.qpos[self.skip_positions :], data.qvel])

    def outcome(self, before, after, action, params):
        x_velocity = (after.qpos[0] - before.qpos[0]) / self.dt
        forward = params.forward_reward_weight * x_velocity
        ctrl = _ctrl_cost(params, action)
        info = {"x_position": after.qpos[0], "x_velocity": x_velocity}
        if self.excluded_positions == 2:  # the swimmer also reports y
            y_velocity = (after.qpos[1] - before.qpos[1]) / self.dt
            info.update(y_position=after.qpos[1], distance_from_origin=jnp.linalg.norm(after.qpos[:2]),
                        y_velocity=y_velocity)  # fmt: skip
        info.update(reward_forward=forward, reward_ctrl=-ctrl)
        return forward - ctrl, jnp.asarray(False), info


class HalfCheetah(_Forward):
    """`mujoco/HalfCheetah-v5`: obs `[17]` (qpos without x, qvel), actions `[6]` in [-1, 1]; never terminates."""

    env_id, xml_file, params_class, default_frame_skip = "HalfCheetah-v5", "half_cheetah.xml", HalfCheetahParams, 5
    qvel_noise, excluded_positions = "normal", 1


class Swimmer(_Forward):
    """`mujoco/Swimmer-v5`: obs `[8]` (qpos without x and y, qvel), actions `[2]` in [-1, 1]; never terminates."""

    env_id, xml_file, params_class, default_frame_skip = "Swimmer-v5", "swimmer.xml", SwimmerParams, 4
    excluded_positions = 2


class Ant(MujocoEnv):
    """`mujoco/Ant-v5`: obs `[105]` (qpos without x and y `[13]`, qvel `[14]`, the clipped
    `cfrc_ext` of the 13 bodies `[78]`), actions `[8]` in [-1, 1]. Forward is the x velocity
    of the torso (body 1, gymnasium's `main_body`); the contact cost counts every body.

    Options: also `include_cfrc_ext_in_observation` (default True; False: obs `[27]`).
    """

    env_id, xml_file, params_class, default_frame_skip = "Ant-v5", "ant.xml", AntParams, 5
    qvel_noise, excluded_positions, needs_contact_forces = "normal", 2, True
    main_body = 1

    def __init__(self, frame_skip: int | None = None, exclude_current_positions_from_observation: bool = True,
                 include_cfrc_ext_in_observation: bool = True):  # fmt: skip
        self.include_cfrc_ext = bool(include_cfrc_ext_in_observation)
        super().__init__(frame_skip, exclude_current_positions_from_observation)

    def contact_forces(self, data, params) -> jax.Array:
        """`cfrc_ext` `[nbody, 6]` clipped to `contact_force_range`."""
        low, high = params.contact_force_range
        return jnp.clip(data.cfrc_ext, low, high)

    def observe(self, data, params):
        parts = [data.qpos[self.skip_positions :], data.qvel]
        if self.include_cfrc_ext:
            parts.append(self.contact_forces(data, params)[1:].reshape(-1))
        return jnp.concatenate(parts)

    def outcome(self, before, after, action, params):
        xy_velocity = (after.xpos[self.main_body, :2] - before.xpos[self.main_body, :2]) / self.dt
        state = jnp.concatenate([after.qpos, after.qvel])
        healthy = jnp.all(jnp.isfinite(state)) & _inside(after.qpos[2], params.healthy_z_range, closed=True)
        forward = params.forward_reward_weight * xy_velocity[0]
        survive = healthy * params.healthy_reward
        ctrl = _ctrl_cost(params, action)
        contact = params.contact_cost_weight * jnp.sum(jnp.square(self.contact_forces(after, params)))
        info = {"x_position": after.qpos[0], "y_position": after.qpos[1],
                "distance_from_origin": jnp.linalg.norm(after.qpos[:2]), "x_velocity": xy_velocity[0],
                "y_velocity": xy_velocity[1], "reward_forward": forward, "reward_ctrl": -ctrl,
                "reward_contact": -contact, "reward_survive": survive}  # fmt: skip
        return forward + survive - ctrl - contact, ~healthy & params.terminate_when_unhealthy, info


class InvertedPendulum(MujocoEnv):
    """`mujoco/InvertedPendulum-v5`: obs `[4]` (cart position, pole angle, their velocities),
    actions `[1]` in [-3, 3]; reward 1 while the pole is within 0.2 rad of upright, and the
    episode ends (reward 0) when it is not."""

    env_id, xml_file, params_class = "InvertedPendulum-v5", "inverted_pendulum.xml", InvertedPendulumParams
    default_frame_skip = 2

    def __init__(self, frame_skip: int | None = None):
        super().__init__(frame_skip)

    def observe(self, data, params):
        return jnp.concatenate([data.qpos, data.qvel])

    def outcome(self, before, after, action, params):
        obs = self.observe(after, params)
        terminated = ~jnp.all(jnp.isfinite(obs)) | (jnp.abs(obs[1]) > 0.2)
        survive = jnp.where(terminated, 0.0, 1.0)
        return survive, terminated, {"reward_survive": survive}


class InvertedDoublePendulum(MujocoEnv):
    """`mujoco/InvertedDoublePendulum-v5`: obs `[9]` (cart position, sin and cos of the two
    hinge angles, clipped qvel `[3]`, the cart's clipped constraint force), actions `[1]`
    in [-1, 1]; ends when the tip (site 0, as of the last substep's start) is at height <= 1."""

    env_id, xml_file = "InvertedDoublePendulum-v5", "inverted_double_pendulum.xml"
    params_class, default_frame_skip, qvel_noise = InvertedDoublePendulumParams, 5, "normal"

    def __init__(self, frame_skip: int | None = None):
        super().__init__(frame_skip)

    def observe(self, data, params):
        angles = data.qpos[1:]
        return jnp.concatenate([data.qpos[:1], jnp.sin(angles), jnp.cos(angles), jnp.clip(data.qvel, -10.0, 10.0),
                                jnp.clip(data.qfrc_constraint, -10.0, 10.0)[:1]])  # fmt: skip

    def outcome(self, before, after, action, params):
        x, y = after.site_xpos[0, 0], after.site_xpos[0, 2]
        terminated = y <= 1.0
        v1, v2 = after.qvel[1], after.qvel[2]
        distance = 0.01 * x**2 + (y - 2.0) ** 2
        velocity = 1e-3 * v1**2 + 5e-3 * v2**2
        survive = jnp.where(terminated, 0.0, params.healthy_reward)
        info = {"reward_survive": survive, "distance_penalty": -distance, "velocity_penalty": -velocity}
        return survive - distance - velocity, terminated, info


TASKS: dict[str, type[MujocoEnv]] = {
    cls.env_id: cls for cls in (Hopper, HalfCheetah, Walker2d, Ant, Swimmer, InvertedPendulum, InvertedDoublePendulum)
}


def options_of(cls: type[MujocoEnv]) -> list[str]:
    """The static options (constructor arguments) a task takes."""
    import inspect

    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def make_task(env_id: str, **kwargs: Any) -> tuple[MujocoEnv, Any]:
    """`mujoco/ENV_ID` and its params: keyword arguments are the task's static options
    (`options_of`) or fields of its params class."""
    from rlx.envs.registry import EnvArgumentError

    cls = TASKS[env_id]
    options = options_of(cls)
    fields = [f.name for f in dataclasses.fields(cls.params_class)]
    bad = [k for k in kwargs if k not in options + fields]
    if bad:
        raise EnvArgumentError(f"mujoco/{env_id} takes no argument{'s' if len(bad) > 1 else ''} "
                               f"{', '.join(map(repr, bad))}; accepted: {', '.join(options + fields)}.")  # fmt: skip
    env = cls(**{k: v for k, v in kwargs.items() if k in options})
    params = cls.params_class(**{k: v for k, v in kwargs.items() if k in fields})
    if int(params.max_steps_in_episode) < 1:
        raise ValueError(f"mujoco/{env_id}: max_steps_in_episode = {params.max_steps_in_episode} is invalid: "
                         "it must be >= 1.")  # fmt: skip
    env._params = params
    return env, params
