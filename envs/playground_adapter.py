"""MuJoCo Playground environments (the `playground` package, the `playground` extra) on
rlx's interface.

    env, params = rlx.envs.make("playground/CartpoleBalance")
    env, params = rlx.envs.make("playground/CheetahRun", episode_length=500, impl="warp")

The DeepMind Control Suite envs of Playground 0.2.0, whose MJCF models ship in its wheel.
Its locomotion and manipulation envs load their robots from MuJoCo Menagerie, which
Playground clones from GitHub at run time; rlx does not download assets, so those ids
are listed and refused in one line (`PlaygroundAssetsError`).

Observations are upstream's state vectors (float32 `[obs_size]`, unbounded Box);
actions are `Box(low, high, (action_size,))` from the model's actuator control ranges
(`[-1, 1]` for every env here). Physics runs on MJX with `impl="jax"` by default, which
runs on CPU and GPU; upstream's default, `impl="warp"`, needs an NVIDIA GPU.

Episode ends: these envs end an episode only when the physics diverges (a NaN in
`qpos` or `qvel`), which is `terminated`; `episode_length` (upstream's config: 1000
control steps for every env here) is a time limit, `truncated`, counted as brax's
EpisodeWrapper that Playground trains with counts it (`action_repeat` control steps per
rlx step, rewards summed over the repeats). rlx auto-resets with `upstream.reset(key)`
from the step's key, so a NaN state never carries on, and puts the observation before
the reset in `info["final_obs"]`; upstream's per-step `metrics` (the reward terms) are
passed through in `info`. Keyword arguments other than `episode_length` and `impl`
replace fields of upstream's config (`ctrl_dt`, `sim_dt`, `action_repeat`, ...). No env
params (`None`).

The upstream package (and MJX) is imported on the first `make`, never by `import rlx.envs`.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rlx.envs.core import Box, SuiteEnv, select_tree
from rlx.errors import RunError

EXTRA = "playground"
# The DM Control Suite envs of Playground 0.2.0 (`mujoco_playground.dm_control_suite`).
IDS = (
    "AcrobotSwingup", "AcrobotSwingupSparse", "BallInCup", "CartpoleBalance", "CartpoleBalanceSparse",
    "CartpoleSwingup", "CartpoleSwingupSparse", "CheetahRun", "FingerSpin", "FingerTurnEasy", "FingerTurnHard",
    "FishSwim", "HopperHop", "HopperStand", "HumanoidStand", "HumanoidWalk", "HumanoidRun", "PendulumSwingup",
    "PointMass", "ReacherEasy", "ReacherHard", "SwimmerSwimmer6", "WalkerRun", "WalkerStand", "WalkerWalk",
)  # fmt: skip
# Playground 0.2.0's locomotion and manipulation envs: their models come from MuJoCo
# Menagerie, cloned at run time (`mujoco_playground._src.mjx_env.ensure_menagerie_exists`).
DOWNLOADS = (
    "ApolloJoystickFlatTerrain", "BarkourJoystick", "BerkeleyHumanoidJoystickFlatTerrain",
    "BerkeleyHumanoidJoystickRoughTerrain", "G1JoystickFlatTerrain", "G1JoystickRoughTerrain",
    "Go1JoystickFlatTerrain", "Go1JoystickRoughTerrain", "Go1Getup", "Go1Handstand", "Go1Footstand",
    "H1InplaceGaitTracking", "H1JoystickGaitTracking", "Op3Joystick", "SpotFlatTerrainJoystick", "SpotGetup",
    "SpotJoystickGaitTracking", "T1JoystickFlatTerrain", "T1JoystickRoughTerrain",
    "AlohaHandOver", "AlohaSinglePegInsertion", "PandaPickCube", "PandaPickCubeOrientation", "PandaPickCubeCartesian",
    "PandaOpenCabinet", "PandaRobotiqPushCube", "LeapCubeReorient", "LeapCubeRotateZAxis", "AeroCubeRotateZAxis",
)  # fmt: skip
IMPLS = ("jax", "warp")


class PlaygroundAssetsError(RunError, FileNotFoundError):
    """A Playground env whose assets upstream would download at run time."""


class PlaygroundState(NamedTuple):
    """Upstream's `mjx_env.State` and the rlx steps taken in the episode."""

    env: Any
    time: jax.Array


def _raw_key(key: jax.Array) -> jax.Array:
    """The uint32 key data of a typed key, as upstream (written for `jax.random.PRNGKey`)
    keeps it in its state; a raw key unchanged."""
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


class PlaygroundEnv(SuiteEnv):
    """A Playground env with rlx's auto-reset and truncation after `max_steps` rlx steps
    (`episode_length` control steps, `action_repeat` per rlx step)."""

    family = "playground"

    def __init__(self, env: Any, env_id: str, episode_length: int, action_repeat: int):
        super().__init__(env, env_id, None)
        # Jitted so that one program traces each once: reset runs in `reset` and again in
        # every `step` (the auto-reset), and tracing MJX takes seconds per call on CPU.
        self._reset, self._step = jax.jit(env.reset), jax.jit(env.step)
        self.action_repeat = action_repeat
        self.max_steps = math.ceil(episode_length / action_repeat)
        self._obs_shape: tuple[int, ...] | None = None

    @property
    def episode_length(self) -> int:
        """rlx steps per episode (the evaluation horizon of `rlx.evaluation`)."""
        return self.max_steps

    @property
    def playground_env(self) -> Any:
        """The upstream env (no auto-reset, no time limit)."""
        return self._env

    def reset(self, key: jax.Array, params: Any = None):
        s = self._reset(_raw_key(key))
        return jnp.asarray(s.obs, jnp.float32), PlaygroundState(s, jnp.zeros((), jnp.int32))

    def _repeat(self, s: Any, action: jax.Array) -> tuple[Any, jax.Array]:
        """`action_repeat` upstream steps: the state and the summed reward."""
        if self.action_repeat == 1:
            s = self._step(s, action)
            return s, s.reward

        def body(s, _):
            s = self._step(s, action)
            return s, s.reward

        s, rewards = jax.lax.scan(body, s, None, self.action_repeat)
        return s, jnp.sum(rewards)

    def step(self, key: jax.Array, state: PlaygroundState, action: Any, params: Any = None):
        s, reward = self._repeat(state.env, jnp.asarray(action, jnp.float32))
        time = state.time + 1
        terminated = jnp.asarray(s.done, jnp.float32) > 0.5
        truncated = (time >= self.max_steps) & ~terminated
        done = terminated | truncated
        fresh = self._reset(_raw_key(key))
        new = select_tree(done, fresh, s)
        obs = jnp.asarray(s.obs, jnp.float32)
        info = {**s.metrics, "final_obs": obs}
        return (jnp.asarray(new.obs, jnp.float32), PlaygroundState(new, jnp.where(done, 0, time).astype(jnp.int32)),
                jnp.asarray(reward, jnp.float32), terminated, truncated, info)  # fmt: skip

    def observation_space(self, params: Any = None) -> Box:
        # From an abstract trace of reset: nothing compiles or runs (upstream's
        # `observation_size` traces the same way).
        if self._obs_shape is None:
            obs = jax.eval_shape(lambda k: self._env.reset(k).obs, jax.random.PRNGKey(0))
            self._obs_shape = tuple(int(n) for n in obs.shape)
        return Box(-float("inf"), float("inf"), self._obs_shape)

    def action_space(self, params: Any = None) -> Box:
        model = self._env.mj_model
        low, high = np.asarray(model.actuator_ctrlrange, np.float64).T
        limited = np.asarray(model.actuator_ctrllimited, bool)
        low, high = np.where(limited, low, -np.inf), np.where(limited, high, np.inf)
        return Box(tuple(low.tolist()), tuple(high.tolist()), (int(self._env.action_size),))


def make_playground(env_id: str, episode_length: int | None = None, impl: str = "jax",
                    **config: Any) -> tuple[PlaygroundEnv, None]:  # fmt: skip
    """`playground/ENV_ID`: the env and `None` (no params). `episode_length` (control
    steps, default upstream's), `impl` (MJX's: "jax" or "warp"); other keywords replace
    fields of upstream's config."""
    from rlx.envs.registry import EnvArgumentError, import_suite

    name = f"playground/{env_id}"
    if env_id in DOWNLOADS:
        raise PlaygroundAssetsError(
            f"{name} loads its robot model from MuJoCo Menagerie, which mujoco_playground clones from GitHub at "
            "run time, and rlx does not download assets; only the DM Control Suite envs, whose models ship "
            "in the playground wheel, are adapted (the ids in rlx.envs.playground_adapter.IDS)."
        )
    if impl not in IMPLS:
        raise ValueError(f"{name}: impl {impl!r} is invalid: accepted values are {', '.join(IMPLS)}.")
    if episode_length is not None and int(episode_length) < 1:
        raise ValueError(f"{name}: episode_length = {episode_length} is invalid: it must be >= 1.")
    import_suite("mujoco_playground", EXTRA, name)
    from mujoco_playground import dm_control_suite

    defaults = dm_control_suite.get_default_config(env_id)
    # Vision settings render with the Madrona batch renderer (a GPU): not adapted here.
    fields = [k for k in defaults.keys() if k not in ("vision", "vision_config", "impl", "episode_length")]
    bad = [k for k in config if k not in fields]
    if bad:
        raise EnvArgumentError(f"{name} takes no argument{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))}; "
                               f"accepted: episode_length, impl, {', '.join(fields)}.")  # fmt: skip
    overrides = {**config, "impl": impl}
    if episode_length is not None:
        overrides["episode_length"] = int(episode_length)
    env = dm_control_suite.load(env_id, config_overrides=overrides)
    repeat = int(env._config.action_repeat)
    if repeat < 1:
        raise ValueError(f"{name}: action_repeat = {repeat} is invalid: it must be >= 1.")
    return PlaygroundEnv(env, env_id, int(env._config.episode_length), repeat), None


ENVS = {f"playground/{i}": functools.partial(make_playground, i) for i in IDS + DOWNLOADS}
