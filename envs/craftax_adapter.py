"""Craftax environments (the `craftax` package, the `craftax` extra) on rlx's interface.

    env, params = rlx.envs.make("craftax/Craftax-Classic-Symbolic-v1")
    env, params = rlx.envs.make("craftax/Craftax-Symbolic-v1", max_timesteps=1000)

Symbolic observations only: a flat float32 vector in [0, 1] (1345 entries for Classic,
8268 for full Craftax); `Discrete(17)` and `Discrete(43)` actions. Keyword arguments of
`make` replace fields of Craftax's `EnvParams` (`max_timesteps`, `day_length`, ...); they
are pytree leaves, so they are traced like rlx's own env params.

The adapter steps Craftax's env without auto-reset and adds rlx's own: Craftax ends an
episode when the player dies (or, in Classic, stands in lava, or, in full Craftax,
beats the final boss), which is `terminated`, or when `state.timestep` reaches
`params.max_timesteps` (10,000 in Classic, 100,000 in full Craftax), which is a time
limit: `truncated`. `info["final_obs"]` is the observation before the reset. Craftax's
own info (the achievements of the episode that ended, as 0 or 100, and Classic's
`score`) is passed through.

The upstream package is imported on the first `make`, never by `import rlx.envs`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import Any

import jax
import jax.numpy as jnp

from rlx.envs.core import Box, Discrete, SuiteEnv, select_tree

EXTRA = "craftax"
# The upstream ids (symbolic observations), as `craftax/<id>`.
IDS = ("Craftax-Classic-Symbolic-v1", "Craftax-Symbolic-v1")
_CLASSES = {
    "Craftax-Classic-Symbolic-v1": ("craftax.craftax_classic.envs.craftax_symbolic_env",
                                    "CraftaxClassicSymbolicEnvNoAutoReset"),
    "Craftax-Symbolic-v1": ("craftax.craftax.envs.craftax_symbolic_env", "CraftaxSymbolicEnvNoAutoReset"),
}  # fmt: skip
_NEVER = jnp.iinfo(jnp.int32).max  # a time limit no episode reaches


def _raw_key(key: jax.Array) -> jax.Array:
    """The uint32 key data of a typed key (rlx's `jax.random.key`), as the upstream code,
    written for `jax.random.PRNGKey`, keeps it in its state; a raw key unchanged."""
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def _strong(tree: Any) -> Any:
    """`tree` with its leaves as strongly typed arrays: upstream's reset leaves some weakly
    typed or as Python numbers (`player_direction`, ...) that its step makes strong arrays,
    and a state whose types change from reset to step compiles a jitted step twice."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.asarray(x).dtype), tree)


class CraftaxEnv(SuiteEnv):
    """A Craftax env (no upstream auto-reset) with rlx's auto-reset, `terminated` for the
    end of the game and `truncated` for `params.max_timesteps`."""

    family = "craftax"

    @property
    def episode_length(self) -> int:
        """The default params' time limit (the evaluation horizon of `rlx.evaluation`)."""
        return int(self._params.max_timesteps)

    @property
    def craftax_env(self) -> Any:
        """The upstream (non-auto-resetting) env."""
        return self._env

    def reset(self, key: jax.Array, params: Any = None):
        params = self.default_params if params is None else params
        obs, state = self._env.reset_env(_raw_key(key), params)
        return obs, _strong(state)

    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None):
        params = self.default_params if params is None else params
        key_step, key_reset = jax.random.split(key)
        obs, next_state, reward, _, info = self._env.step_env(_raw_key(key_step), state, action, params)
        # The game's own end (death, lava, the final boss) without the time limit...
        terminated = jnp.asarray(self._env.is_terminal(next_state, params.replace(max_timesteps=_NEVER)), jnp.bool_)
        # ... and the time limit, which upstream folds into the same `done`.
        truncated = (next_state.timestep >= params.max_timesteps) & ~terminated
        reset_obs, reset_state = self._env.reset_env(_raw_key(key_reset), params)
        done = terminated | truncated
        info = {**info, "final_obs": obs}
        return (select_tree(done, reset_obs, obs), select_tree(done, reset_state, next_state),
                jnp.asarray(reward, jnp.float32), terminated, truncated, info)  # fmt: skip

    def observation_space(self, params: Any = None) -> Box:
        space = self._env.observation_space(self.default_params if params is None else params)
        return Box(float(space.low), float(space.high), tuple(space.shape))

    def action_space(self, params: Any = None) -> Discrete:
        return Discrete(int(self._env.action_space(params).n))


def _upstream(env_id: str) -> Any:
    """The upstream env class of `env_id`, or a one-line error naming the extra."""
    from rlx.envs.registry import import_suite

    module, cls = _CLASSES[env_id]
    return getattr(import_suite(module, EXTRA, f"craftax/{env_id}"), cls)


def make_craftax(env_id: str, **params: Any) -> tuple[CraftaxEnv, Any]:
    """`craftax/ENV_ID`: the Craftax env and its `EnvParams`, with the fields named in
    `params` replaced (e.g. `max_timesteps=500` for shorter episodes)."""
    from rlx.envs.registry import EnvArgumentError

    env = _upstream(env_id)()
    defaults = env.default_params
    fields = [f.name for f in dataclasses.fields(defaults)]
    bad = [k for k in params if k not in fields]
    if bad:
        close = [c for k in bad for c in difflib.get_close_matches(k, fields, n=1)]
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise EnvArgumentError(f"craftax/{env_id} takes no argument{'s' if len(bad) > 1 else ''} "
                               f"{', '.join(map(repr, bad))}; accepted: {', '.join(fields)}.{hint}")  # fmt: skip
    if "max_timesteps" in params and int(params["max_timesteps"]) < 1:
        raise ValueError(f"craftax/{env_id}: max_timesteps = {params['max_timesteps']} is invalid: it must be >= 1.")
    params = defaults.replace(**params)
    return CraftaxEnv(env, env_id, params), params


ENVS = {f"craftax/{i}": functools.partial(make_craftax, i) for i in IDS}
