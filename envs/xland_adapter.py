"""XLand-MiniGrid environments (the `xminigrid` package, the `xland` extra) on rlx's interface.

    env, params = rlx.envs.make("xland/MiniGrid-Empty-8x8")
    env, params = rlx.envs.make("xland/XLand-MiniGrid-R1-9x9", benchmark="trivial-21k", ruleset_id=7)

Observations are the agent's `view_size x view_size` field of view with two channels
(tile id, colour id), as float32 `[view_size, view_size, 2]` in [0, 12]; `Discrete(6)`
actions (forward, right, left, pick up, put down, toggle). The reward is upstream's:
`1 - 0.9 * steps / max_steps` when the goal is reached, else 0.

Episode ends: reaching the goal is `terminated`; `max_steps` (upstream's default:
`4 * height * width` for MiniGrid envs, `3 * height * width` for XLand-MiniGrid) is a
time limit, `truncated`. A step that does both counts as terminated. rlx auto-resets
and puts the observation before the reset in `info["final_obs"]`. Upstream's params
other than the ruleset are static (not pytree leaves): `max_steps` and `view_size`
are set at `make`, and are not traced.

XLand-MiniGrid ids (`XLand-MiniGrid-R<rooms>-<size>`) default to upstream's empty
ruleset (no goal: every episode is truncated). For meta-RL, `benchmark=NAME` with
`ruleset_id=i` puts ruleset `i` of one of upstream's benchmarks into the params, and
`benchmark_params(params, NAME, ids)` stacks several along a leading axis to vmap over.
The benchmarks do not ship with the package: they are read from xminigrid's data
folder (`$XLAND_MINIGRID_DATA`, default `~/.xland_minigrid`), and one that is not
there is refused with a line saying how to fetch it, never downloaded here.

The upstream package is imported on the first `make`, never by `import rlx.envs`.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp

from rlx.envs.core import Box, Discrete, SuiteEnv, select_tree
from rlx.errors import RunError

EXTRA = "xland"
# A few standard MiniGrid tasks and the XLand-MiniGrid layouts, as `xland/<upstream id>`.
IDS = (
    "MiniGrid-Empty-5x5", "MiniGrid-Empty-8x8", "MiniGrid-EmptyRandom-5x5", "MiniGrid-DoorKey-5x5",
    "MiniGrid-FourRooms", "XLand-MiniGrid-R1-9x9", "XLand-MiniGrid-R4-13x13",
)  # fmt: skip
_MAX_TILE_ID = 12  # NUM_TILES - 1 (13 tiles); colour ids go to NUM_COLORS - 1 = 11


def _raw_key(key: jax.Array) -> jax.Array:
    """The uint32 key data of a typed key (rlx's `jax.random.key`), as the upstream code,
    written for `jax.random.PRNGKey`, keeps it in its state; a raw key unchanged."""
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


class XLandBenchmarkMissingError(RunError, FileNotFoundError):
    """An XLand-MiniGrid benchmark is not in xminigrid's data folder (it would be downloaded)."""


class XLandEnv(SuiteEnv):
    """An XLand-MiniGrid env with rlx's auto-reset; the state is upstream's `TimeStep`."""

    family = "xland"

    @property
    def xminigrid_env(self) -> Any:
        """The upstream env (no auto-reset; `step(params, timestep, action)`)."""
        return self._env

    def reset(self, key: jax.Array, params: Any = None):
        params = self.default_params if params is None else params
        timestep = self._env.reset(params, _raw_key(key))
        return timestep.observation.astype(jnp.float32), timestep

    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None):
        params = self.default_params if params is None else params
        timestep = self._env.step(params, state, action)
        # Upstream: LAST on the goal (discount 0) or at step_num == max_steps (discount 1).
        terminated = timestep.last() & (timestep.discount == 0)
        truncated = timestep.last() & ~terminated
        fresh = self._env.reset(params, _raw_key(key))
        new = select_tree(terminated | truncated, fresh, timestep)
        obs = timestep.observation.astype(jnp.float32)
        info = {"final_obs": obs}
        return (new.observation.astype(jnp.float32), new, jnp.asarray(timestep.reward, jnp.float32),
                terminated, truncated, info)  # fmt: skip

    def observation_space(self, params: Any = None) -> Box:
        params = self.default_params if params is None else params
        shape = tuple(int(n) for n in self._env.observation_shape(params))
        return Box(0.0, float(_MAX_TILE_ID), shape)

    def action_space(self, params: Any = None) -> Discrete:
        return Discrete(int(self._env.num_actions(self.default_params if params is None else params)))


def _xminigrid(name: str) -> Any:
    from rlx.envs.registry import import_suite

    return import_suite("xminigrid", EXTRA, name)


def load_benchmark(name: str) -> Any:
    """Upstream's benchmark `name` (a `xminigrid.benchmarks.Benchmark`) from xminigrid's data
    folder; XLandBenchmarkMissingError, in one line, if it is not there (never downloads)."""
    _xminigrid(f"xland benchmark {name!r}")
    from xminigrid import benchmarks

    if name not in benchmarks.NAME2HFFILENAME:
        raise ValueError(f"xland benchmark {name!r} is unknown: accepted values are "
                         f"{', '.join(benchmarks.registered_benchmarks())}.")  # fmt: skip
    path = os.path.join(benchmarks.DATA_PATH, benchmarks.NAME2HFFILENAME[name])
    if not os.path.exists(path):
        raise XLandBenchmarkMissingError(
            f"xland benchmark {name!r} is not at {path} and rlx does not download it: fetch it once with "
            f"`python -c \"import xminigrid; xminigrid.load_benchmark('{name}')\"` (from Hugging Face, "
            f"{benchmarks.HF_REPO_ID}), or set XLAND_MINIGRID_DATA to a folder that holds it."
        )
    return benchmarks.load_benchmark_from_path(path)


def benchmark_params(params: Any, benchmark: str | Any, ruleset_ids: Any) -> Any:
    """`params` with the rulesets `ruleset_ids` (a sequence) of `benchmark` (a name, or a
    loaded Benchmark) stacked on a leading axis: one row of env params per task, to vmap
    over. The static fields (size, view, max_steps) are shared."""
    bench = load_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    rulesets = jax.vmap(bench.get_ruleset)(jnp.asarray(ruleset_ids, jnp.int32))
    return params.replace(ruleset=rulesets)


def make_xland(
    env_id: str, max_steps: int | None = None, view_size: int | None = None,
    benchmark: str | None = None, ruleset_id: int | None = None,
) -> tuple[XLandEnv, Any]:  # fmt: skip
    """`xland/ENV_ID`: the XLand-MiniGrid env and its params. `max_steps` (the time limit)
    and `view_size` (odd) replace upstream's; for `XLand-MiniGrid-*` ids, `benchmark` and
    `ruleset_id` (default 0) pick the task (default: the empty ruleset)."""
    name = f"xland/{env_id}"
    if max_steps is not None and int(max_steps) < 1:
        raise ValueError(f"{name}: max_steps = {max_steps} is invalid: it must be >= 1.")
    if view_size is not None and (int(view_size) < 3 or int(view_size) % 2 == 0):
        raise ValueError(f"{name}: view_size = {view_size} is invalid: it must be odd and >= 3.")
    if benchmark is not None and not env_id.startswith("XLand-MiniGrid"):
        raise ValueError(f"{name}: benchmark = {benchmark!r} is only for the xland/XLand-MiniGrid-* envs, "
                         "whose goal and rules come from a ruleset.")  # fmt: skip
    if ruleset_id is not None and benchmark is None:
        raise ValueError(f"{name}: ruleset_id = {ruleset_id} needs benchmark=NAME, the benchmark it indexes.")
    xminigrid = _xminigrid(name)
    overrides = {k: int(v) for k, v in (("max_steps", max_steps), ("view_size", view_size)) if v is not None}
    env, params = xminigrid.make(env_id, **overrides)
    if benchmark is not None:
        bench = load_benchmark(benchmark)
        ruleset_id = 0 if ruleset_id is None else int(ruleset_id)
        if not 0 <= ruleset_id < bench.num_rulesets():
            raise ValueError(f"{name}: ruleset_id = {ruleset_id} is invalid: benchmark {benchmark!r} has "
                             f"rulesets 0 .. {bench.num_rulesets() - 1}.")  # fmt: skip
        params = params.replace(ruleset=bench.get_ruleset(ruleset_id))
    return XLandEnv(env, env_id, params), params


ENVS = {f"xland/{i}": functools.partial(make_xland, i) for i in IDS}
