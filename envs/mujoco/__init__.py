"""MuJoCo tasks on `mujoco.mjx` with gymnasium v5's semantics (the `mujoco` extra).

    env, params = rlx.envs.make("mujoco/Hopper-v5")
    env, params = rlx.envs.make("mujoco/Ant-v5", include_cfrc_ext_in_observation=False, ctrl_cost_weight=0.1)
    env, params = rlx.envs.make("mujoco/mo-hopper-v5")  # MO-Gymnasium's 3 objectives

Tasks: Hopper, HalfCheetah, Walker2d, Ant, Swimmer, InvertedPendulum and
InvertedDoublePendulum, each `-v5`, built from gymnasium 1.3's own XML models (read from
the installed gymnasium, not copied) and stepped by MJX (`rlx.envs.mujoco.tasks` says
how they follow gymnasium). Keyword arguments are gymnasium's: static options
(`frame_skip`, `exclude_current_positions_from_observation`, Ant's
`include_cfrc_ext_in_observation`) and traced params (reward weights, healthy ranges,
`reset_noise_scale`, and `max_steps_in_episode`, 1000 for every task as gymnasium
registers them). The multi-objective versions of MO-Gymnasium 1.3.2 are
`mujoco/mo-<task>-v5` (`rlx.envs.mujoco.multi_objective`). Humanoid is left out: its
model uses the PGS solver, which `mjx.put_model` refuses (NotImplementedError).

`mujoco`, `mujoco.mjx` and `gymnasium` are imported on the first `make`, never by
`import rlx.envs`.

C-MORL's MuJoCo setting (github.com/RuohLiuq/C-MORL, read at commit 67473b5):
- MO-Gymnasium 1.1.0 with gymnasium 0.29.1 and mujoco 3.2.0 (`environment.yml` lines 59,
  66, 67).
- the v4 envs, not v5: `mo-hopper-2d-v4`, `mo-hopper-v4` (3 objectives), `mo-ant-2d-v4`,
  `mo-ant-v4` (3 objectives) and `mo-humanoid-v4` (`scripts/hopper-2d.py`,
  `hopper-3d.py`, `ant-2d.py`, `ant-3d.py`, `humanoid-v2.py`, line 26 each);
- episodes of 500 steps, not 1000, in training and evaluation:
  `mo_gym.make(env_id, max_episode_steps=500)` in
  `externals/pytorch-a2c-ppo-acktr-gail/a2c_ppo_acktr/envs.py` lines 51 and 53,
  `morl/mopg.py` lines 40 and 42, `morl/warm_up.py` lines 43 and 45;
- hypervolume reference point -100 per objective (`scripts/hopper-2d.py`, `--ref-point
  -100 -100`).
To run that setting here, make the `-v5` env with `max_steps_in_episode=500`; the v4 and
v5 models and observations differ (for one, Ant v4's observation has no contact forces
by default), so numbers are not interchangeable.
"""

from __future__ import annotations

from typing import Any, Callable

from rlx.envs.mujoco.multi_objective import MO_TASKS, make_mo_task
from rlx.envs.mujoco.tasks import EXTRA, TASKS, make_task, options_of
from rlx.envs.registry import forwards_kwargs

#: the gymnasium v5 ids, as `mujoco/<id>`
IDS = tuple(TASKS)


def _factory(env_id: str, mo_id: str | None = None) -> Callable[..., tuple[Any, Any]]:
    """`make`'s factory for one env; its keywords are the task's options and params fields."""
    cls = TASKS[env_id]

    @forwards_kwargs(cls, cls.params_class)
    def make(**kwargs: Any) -> tuple[Any, Any]:
        return make_task(env_id, **kwargs) if mo_id is None else make_mo_task(mo_id, **kwargs)

    make.__doc__ = (f"`mujoco/{mo_id or env_id}`: keywords are {', '.join(options_of(cls))} "
                    f"or fields of {cls.params_class.__name__}.")  # fmt: skip
    return make


ENVS = {f"mujoco/{i}": _factory(i) for i in IDS}
ENVS.update({f"mujoco/{m}": _factory(task, m) for m, (task, _) in MO_TASKS.items()})

__all__ = ["ENVS", "EXTRA", "IDS", "MO_TASKS"]
