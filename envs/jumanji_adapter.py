"""Jumanji environments (the `jumanji` package, the `jumanji` extra) on rlx's interface.

    env, params = rlx.envs.make("jumanji/Snake-v1")
    env, params = rlx.envs.make("jumanji/Snake-v1", num_rows=6, num_cols=6, time_limit=50)

Observations: upstream's observation (a NamedTuple or dataclass of arrays) flattened
into one float32 vector, its fields in the order of upstream's observation spec, each
raveled in C order; the Box bounds are the spec's (`-inf`/`inf` where upstream gives
none). Action masks stay in the vector, and the mask of the flat action is also in
`info["action_mask"]` (bool `[n]`). Actions: `Discrete(n)`; a multi-discrete action
spec with `num_values = (n_0, ..., n_k)` becomes `Discrete(n_0 * ... * n_k)`, flat index
`a = ravel_multi_index((a_0, ..., a_k), num_values)` (C order: `a_0` most significant);
`unflatten_action` goes back. Keyword arguments of `make` go to upstream's constructor
(`num_rows`, `board_size`, a `generator`, ...; not `viewer`), but `time_limit` is
rlx's (below).

Episode ends. Jumanji 1.1.2 ends these envs' episodes at their time limit with
`termination` (discount 0), like a game over, so its TimeStep cannot tell the two
apart. The adapter therefore builds the upstream env with a time limit one step beyond
rlx's and counts steps itself: upstream's LAST step with discount 0 is `terminated`, and
`time_limit` steps (default: upstream's episode length) is `truncated` (a LAST with
discount > 0, which none of these envs gives, is `truncated` too). A step that does both
is terminated. Defaults: Snake 4000, Maze 100, RubiksCube partly-scrambled 20, Tetris
400, Cleaner 100; Game2048, Minesweeper and Knapsack have no time limit
(`time_limit=None`: never truncated; a number adds one). rlx auto-resets with
`upstream.reset(key)` from the step's key; upstream's own randomness within an episode
comes from the key in its state. `info["final_obs"]` is the observation before the
reset; upstream's `extras` are passed through in `info`.

No env params (`None`). The upstream package is imported on the first `make`, never by
`import rlx.envs`.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rlx.envs.core import Box, Discrete, SuiteEnv, select_tree

EXTRA = "jumanji"
# Standard single-agent tasks (and Cleaner, whose 3 agents share one reward), cheap on CPU,
# none of which downloads data (Sokoban-v0 would: its levels come from Hugging Face).
IDS = (
    "Snake-v1", "Game2048-v1", "Maze-v0", "Minesweeper-v0", "RubiksCube-partly-scrambled-v0",
    "Tetris-v0", "Knapsack-v1", "Cleaner-v0",
)  # fmt: skip


class JumanjiState(NamedTuple):
    """Upstream's state and the steps taken in the episode (rlx's time limit)."""

    env: Any
    time: jax.Array


def _raw_key(key: jax.Array) -> jax.Array:
    """The uint32 key data of a typed key, as upstream (written for `jax.random.PRNGKey`)
    keeps it in its state; a raw key unchanged."""
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def _strong(tree: Any) -> Any:
    """`tree` with strongly typed leaves: a weakly typed leaf from reset that step makes
    strong would compile a jitted step twice."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.asarray(x).dtype), tree)


def _spec_leaves(spec: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """The array specs of a (nested) jumanji spec, with their attribute paths, in spec order."""
    children = getattr(spec, "_specs", None)
    if not children:  # an Array spec (Array, BoundedArray, DiscreteArray, ...)
        return [(path, spec)]
    return [leaf for name, child in children.items() for leaf in _spec_leaves(child, path + (name,))]


def _bounds(spec: Any) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of one array spec, as float64 arrays of its size."""
    size = int(np.prod(spec.shape))
    if np.dtype(spec.dtype) == np.bool_:
        return np.zeros(size), np.ones(size)
    if not hasattr(spec, "minimum"):
        return np.full(size, -np.inf), np.full(size, np.inf)
    low = np.broadcast_to(np.asarray(spec.minimum, np.float64), spec.shape).reshape(-1)
    high = np.broadcast_to(np.asarray(spec.maximum, np.float64), spec.shape).reshape(-1)
    return low, high


def unflatten_action(action: jax.Array, num_values: tuple[int, ...]) -> jax.Array:
    """Flat action index `[]` -> upstream's multi-discrete action `[k]` (C order)."""
    return jnp.stack(jnp.unravel_index(action, num_values)).astype(jnp.int32)


class JumanjiEnv(SuiteEnv):
    """A Jumanji env (upstream's own time limit out of reach) with rlx's auto-reset,
    flat float32 observations, flat discrete actions, and truncation at `episode_length`."""

    family = "jumanji"

    def __init__(self, env: Any, env_id: str, episode_length: int | None):
        super().__init__(env, env_id, None)
        # Jitted so that one program traces each once: reset runs in `reset` and again in
        # every `step` (the auto-reset).
        self._reset, self._step = jax.jit(env.reset), jax.jit(env.step)
        self.episode_length = episode_length
        self._leaves = _spec_leaves(env.observation_spec)
        low, high = zip(*(_bounds(s) for _, s in self._leaves))
        self._low, self._high = np.concatenate(low), np.concatenate(high)
        spec = env.action_spec
        # A DiscreteArray has a scalar num_values, a MultiDiscreteArray one per component.
        self.num_values = tuple(int(n) for n in np.atleast_1d(np.asarray(spec.num_values)))
        self._multi = np.ndim(spec.num_values) > 0
        self._mask_path = next((p for p, _ in self._leaves if p == ("action_mask",)), None)

    @property
    def jumanji_env(self) -> Any:
        """The upstream env (its time limit set beyond `episode_length`)."""
        return self._env

    def flatten_obs(self, obs: Any) -> jax.Array:
        """Upstream's observation -> `[observation_space.shape[0]]` float32."""
        parts = [functools.reduce(getattr, path, obs) for path, _ in self._leaves]
        return jnp.concatenate([jnp.ravel(jnp.asarray(p)).astype(jnp.float32) for p in parts])

    def action_mask(self, obs: Any) -> jax.Array:
        """The flat action's mask `[n]` (bool), from upstream's `action_mask`: its
        `num_values`-shaped mask raveled, or, for a mask per agent (`[k, n_agent]`),
        the product of the agents' masks; all True without one."""
        n = int(np.prod(self.num_values))
        if self._mask_path is None:
            return jnp.ones(n, jnp.bool_)
        mask = jnp.asarray(obs.action_mask, jnp.bool_)
        if mask.shape == self.num_values or mask.shape == (n,):
            return mask.reshape(n)
        joint = jnp.ones((), jnp.bool_)
        for row in mask:  # one agent after another: C order, as the flat index
            joint = (joint[..., None] & row).reshape(-1)
        return joint

    def _to_upstream(self, action: jax.Array) -> jax.Array:
        action = jnp.asarray(action, jnp.int32)
        return unflatten_action(action, self.num_values) if self._multi else action

    def reset(self, key: jax.Array, params: Any = None):
        state, timestep = self._reset(_raw_key(key))
        return self.flatten_obs(timestep.observation), JumanjiState(_strong(state), jnp.zeros((), jnp.int32))

    def step(self, key: jax.Array, state: JumanjiState, action: Any, params: Any = None):
        next_state, timestep = self._step(state.env, self._to_upstream(action))
        time = state.time + 1
        last = timestep.last()
        terminated = last & (jnp.asarray(timestep.discount) == 0)
        limit = jnp.zeros((), jnp.bool_) if self.episode_length is None else time >= self.episode_length
        truncated = (limit | last) & ~terminated
        done = terminated | truncated
        fresh_state, fresh = self._reset(_raw_key(key))
        obs = self.flatten_obs(timestep.observation)
        new_obs = jnp.where(done, self.flatten_obs(fresh.observation), obs)
        new_state = JumanjiState(select_tree(done, _strong(fresh_state), _strong(next_state)),
                                 jnp.where(done, 0, time).astype(jnp.int32))  # fmt: skip
        mask = jnp.where(done, self.action_mask(fresh.observation), self.action_mask(timestep.observation))
        info = {**timestep.extras, "final_obs": obs, "action_mask": mask}
        return new_obs, new_state, jnp.asarray(timestep.reward, jnp.float32), terminated, truncated, info

    def observation_space(self, params: Any = None) -> Box:
        n = self._low.size
        return Box(tuple(self._low.tolist()), tuple(self._high.tolist()), (n,))

    def action_space(self, params: Any = None) -> Discrete:
        return Discrete(int(np.prod(self.num_values)))


def make_jumanji(env_id: str, time_limit: int | None | str = "default", **kwargs: Any) -> tuple[JumanjiEnv, None]:
    """`jumanji/ENV_ID`: the env and `None` (no params). `time_limit`: steps before
    truncation (default: upstream's episode length; `None`: never, only for envs without an
    upstream limit); other keywords go to upstream's constructor."""
    from rlx.envs.registry import EnvArgumentError, import_suite

    name = f"jumanji/{env_id}"
    jumanji = import_suite("jumanji", EXTRA, name)
    cls = jumanji.registration.load(jumanji.registration._REGISTRY[env_id].entry_point)
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("self", "viewer")]  # viewer: rendering
    bad = [k for k in kwargs if k not in accepted]
    if bad:
        raise EnvArgumentError(f"{name} takes no argument{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))}; "
                               f"accepted: time_limit, {', '.join(a for a in accepted if a != 'time_limit')}.")  # fmt: skip
    has_limit = "time_limit" in accepted
    if time_limit == "default":
        # Upstream's own limit, read off an env built as registered (with `kwargs`).
        default = jumanji.make(env_id, **kwargs).time_limit if has_limit else None
        time_limit = None if default is None else int(default)
    elif time_limit is None and has_limit:
        raise ValueError(f"{name}: time_limit = None is invalid: upstream's episodes end at a time limit, "
                         "so it must be an int >= 1.")  # fmt: skip
    if time_limit is not None and int(time_limit) < 1:
        raise ValueError(f"{name}: time_limit = {time_limit} is invalid: it must be >= 1 (or None for no limit).")
    time_limit = None if time_limit is None else int(time_limit)
    if has_limit:  # out of reach: rlx truncates (and resets) at time_limit, upstream would at time_limit + 1
        kwargs["time_limit"] = time_limit + 1
    env = JumanjiEnv(jumanji.make(env_id, **kwargs), env_id, time_limit)
    return env, None


ENVS = {f"jumanji/{i}": functools.partial(make_jumanji, i) for i in IDS}
