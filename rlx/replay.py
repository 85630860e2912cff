"""A pure-functional ring buffer of transitions that lives inside the jitted train state.

    buf = replay.init(example, capacity)        # example: one transition, leaves [*item]
    buf = replay.add(buf, batch)                # batch leaves [N, *item], N <= capacity
    ok = replay.can_sample(buf, batch_size)     # bool scalar
    mb = replay.sample(buf, key, batch_size)    # leaves [batch_size, *item]

The buffer is a pytree (`ReplayState`): it is carried by `lax.scan`, vmapped over a
population, checkpointed by orbax with the rest of the state and resumed exactly.
Writes wrap around (oldest items are overwritten); sampling is uniform over the
`size` items written so far. Nothing here branches on data, so the same program
runs under `vmap` (no `lax.cond` turning into a both-branches `select`).

Memory: every member of a population holds its own buffer, so a population needs
`P * capacity * transition_bytes(example)` bytes (`nbytes(example, capacity)` per
member). For example, SAC on Pendulum (3-d obs, 1-d action) stores obs and
next_obs (6 float32), action and reward (2 float32) and the terminated/truncated
flags (2 bools): 34 bytes per transition, so a capacity of 1e5 is 3.4 MB per member
and 64 members need 218 MB. Agents expose `buffer_bytes(env, cfg)`; size `capacity` so that
`population * buffer_bytes` fits in device memory (it is allocated up front).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlx.config import static_part
from rlx.envs.wrappers import episode_summary
from rlx.types import Agent


class Transition(NamedTuple):
    """One stored step of an off-policy agent; inside a rollout every leaf has leading
    axes `[T, B]`. `obs` may be any pytree (e.g. the dict of a stock-augmented env)."""

    obs: Any  # [*obs_shape]
    action: jax.Array  # [] int32 (discrete) or [D]
    reward: jax.Array  # []
    next_obs: Any  # [*obs_shape]: the true next observation (pre-reset, `info["final_obs"]`)
    terminated: jax.Array  # [] bool: no bootstrap
    truncated: jax.Array  # [] bool: time limit; bootstrap from next_obs


@struct.dataclass
class ReplayState:
    """data: the stored transitions, leaves `[capacity, *item]`; position: int32, next
    write index; size: int32, number of valid items (saturates at capacity)."""

    data: Any
    position: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0]


def init(example: Any, capacity: int) -> ReplayState:
    """An empty buffer for items shaped like `example` (one transition; arrays or
    `jax.ShapeDtypeStruct`s). All memory is allocated now, zero-filled."""
    if int(capacity) < 1:
        raise ValueError(f"replay capacity = {capacity} is invalid: it must be >= 1.")
    data = jax.tree.map(lambda x: jnp.zeros((int(capacity),) + tuple(x.shape), x.dtype), example)
    zero = jnp.zeros((), jnp.int32)
    return ReplayState(data, zero, zero)


def add(state: ReplayState, batch: Any) -> ReplayState:
    """Write `N` items (leaves `[N, *item]`) at the write position, wrapping around.

    `N` must not exceed the capacity (a larger write would overwrite itself)."""
    capacity = state.capacity
    n = jax.tree.leaves(batch)[0].shape[0]
    if n > capacity:
        raise ValueError(f"replay.add: a batch of {n} items does not fit a buffer of capacity {capacity}.")
    idx = (state.position + jnp.arange(n, dtype=jnp.int32)) % capacity
    data = jax.tree.map(
        lambda buf, x: buf.at[idx].set(x.astype(buf.dtype), unique_indices=True, mode="promise_in_bounds"),
        state.data,
        batch,
    )
    return ReplayState(data, (state.position + n) % capacity, jnp.minimum(state.size + n, capacity))


def sample(state: ReplayState, key: jax.Array, batch_size: int) -> Any:
    """`batch_size` items drawn uniformly with replacement from the valid ones.

    Sampling an empty buffer returns zero-filled items; guard with `can_sample` (or,
    as rlx agents do, fill the buffer in a warm-up phase before any sampling)."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1))
    return jax.tree.map(lambda buf: buf[idx], state.data)


def can_sample(state: ReplayState, batch_size: int) -> jax.Array:
    """Whether at least `batch_size` items have been written (a bool scalar)."""
    return state.size >= batch_size


def transition_bytes(example: Any) -> int:
    """Bytes one item takes in the buffer."""
    return int(sum(np.prod(x.shape, dtype=np.int64) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(example)))


def nbytes(example: Any, capacity: int) -> int:
    """Bytes a buffer of `capacity` items like `example` holds (one population member)."""
    return int(capacity) * transition_bytes(example)


def format_bytes(n: int) -> str:
    """`n` bytes in binary units: "512 B", "26.0 MiB"."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def check_schedule(cfg) -> None:
    """Checks every replay-based agent config shares: the buffer holds a minibatch and one
    update's transitions, `utd` gives a whole number of gradient steps per update, and
    the warm-up and budget fit whole updates. Raises a ValueError naming the field."""
    name = type(cfg).__name__
    if cfg.buffer_size < cfg.batch_size:
        raise ValueError(
            f"{name}.buffer_size = {cfg.buffer_size} is invalid: it must be >= batch_size = "
            f"{cfg.batch_size} (one minibatch); raise buffer_size or lower batch_size."
        )
    per_update = cfg.num_envs * cfg.rollout_steps
    if cfg.buffer_size < per_update:
        raise ValueError(
            f"{name}.buffer_size = {cfg.buffer_size} is invalid: it must be >= num_envs*rollout_steps "
            f"= {per_update} (the transitions added by one update)."
        )
    grad = cfg.utd * per_update
    if abs(grad - round(grad)) > 1e-9 or round(grad) < 1:
        ok = sorted({k / per_update for k in range(1, 9)})
        raise ValueError(
            f"{name}.utd = {cfg.utd} is invalid: utd*num_envs*rollout_steps = {grad} must be a whole "
            f"number of gradient steps >= 1; accepted values include {[round(v, 6) for v in ok]}."
        )
    if cfg.learning_starts % cfg.num_envs:
        raise ValueError(
            f"{name}.learning_starts = {cfg.learning_starts} is invalid: it must be a multiple of "
            f"num_envs = {cfg.num_envs} (every env takes the same warm-up steps)."
        )
    if cfg.total_steps < cfg.learning_starts + per_update:
        raise ValueError(
            f"{name}.total_steps = {cfg.total_steps} is invalid: it must be >= learning_starts + "
            f"num_envs*rollout_steps = {cfg.learning_starts + per_update} (warm-up and one update)."
        )


class ReplaySchedule:
    """Mixin for replay-based agent configs with fields num_envs, rollout_steps, utd,
    total_steps, learning_starts, buffer_size and batch_size: the shared checks and the
    update schedule derived from them."""

    def check(self) -> None:
        check_schedule(self)

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.rollout_steps

    @property
    def gradient_steps(self) -> int:
        """Gradient steps in one update."""
        return int(round(self.utd * self.steps_per_update))

    @property
    def num_updates(self) -> int:
        return (self.total_steps - self.learning_starts) // self.steps_per_update


# --------------------------------------------------------------------------------------
# Collecting into replay: shared by every replay-based agent (SAC, DQN, DηN)
# --------------------------------------------------------------------------------------


def collect(
    env: Any,
    env_params: Any,
    carry: tuple,
    policy: Callable[[Any, jax.Array], jax.Array],
    num_steps: int,
    to_env: Callable[[jax.Array], jax.Array] | None = None,
) -> tuple[tuple, Transition]:
    """`rlx.rollout.collect` keeping replay `Transition`s (leaves `[T, B, ...]`, with
    `next_obs` the true next observation). `policy(obs, key) -> action` is what is
    stored; `to_env` maps it to the env's action (default: as is)."""
    from rlx import rollout

    def keep(step: rollout.Step) -> Transition:
        return Transition(step.obs, step.action, step.reward, step.final_obs, step.terminated, step.truncated)

    return rollout.collect(env, env_params, carry, policy, num_steps, keep, to_env)


def add_rollout(state: ReplayState, traj: Any) -> ReplayState:
    """Add a rollout with leaves `[T, B, ...]` (oldest step first). When `T*B` exceeds
    the capacity (a warm-up longer than the buffer) it is added step by step, so the
    oldest items are overwritten as in a stream of single-step writes."""
    t, b = jax.tree.leaves(traj)[0].shape[:2]
    if t * b <= state.capacity:
        return add(state, jax.tree.map(lambda x: x.reshape((t * b,) + x.shape[2:]), traj))
    return jax.lax.fori_loop(0, t, lambda i, s: add(s, jax.tree.map(lambda x: x[i], traj)), state)


# --------------------------------------------------------------------------------------
# The start, the end and the wiring of a replay agent: shared by SAC, DQN and DηN
# --------------------------------------------------------------------------------------


def reset_and_fill(env: Any, env_params: Any, keys: tuple, example: Any, warmup: Callable,
                   cfg: Any) -> tuple[Any, Any, ReplayState, Any]:  # fmt: skip
    """The start of a replay agent's run (SAC, DQN, DηN): `cfg.num_envs` envs reset (env i
    on `split(k_env, num_envs)[i]`, `keys = (k_env, k_warm)`) and an empty buffer for items
    like `example`, filled by the warm-up phase `warmup((env_state, obs, k_warm),
    learning_starts // num_envs) -> (carry, traj)`. Returns `(env_state [B], obs [B, ...],
    buffer, traj)`, `traj` the warm-up rollout (leaves `[T, B, ...]`) or None without one."""
    k_env, k_warm = keys
    obs, env_state = jax.vmap(env.reset, (0, None))(jax.random.split(k_env, cfg.num_envs), env_params)
    buffer = init(example, cfg.buffer_size)
    warmup_steps = cfg.learning_starts // cfg.num_envs
    if not warmup_steps:
        return env_state, obs, buffer, None
    (env_state, obs, _), traj = warmup((env_state, obs, k_warm), warmup_steps)
    return env_state, obs, add_rollout(buffer, traj), traj


@struct.dataclass
class AgentState:
    """The train state of a replay agent (SAC, DQN, DηN); `params` and `opt_state` are
    the agent's own."""

    params: Any
    opt_state: Any
    buffer: ReplayState
    env_state: Any  # [B] batched env states (with episode statistics)
    obs: Any  # [B, *obs_shape], or a dict of such (the DηN agent's stock-augmented env)
    key: jax.Array
    update_step: jax.Array  # int32, updates done so far
    env_steps: jax.Array  # int32, env steps done so far (this member, warm-up included)


def start_state(params: Any, opt_state: Any, buffer: ReplayState, env_state: Any, obs: Any, key: jax.Array,
                learning_starts: int) -> AgentState:  # fmt: skip
    """The state after the warm-up: no update done, `learning_starts` env steps taken."""
    zero = jnp.zeros((), jnp.int32)
    return AgentState(params, opt_state, buffer, env_state, obs, key, zero, zero + learning_starts)


def finish_update(state: AgentState, params: Any, opt_state: Any, buffer: ReplayState, carry: tuple, stats: dict,
                  steps_per_update: int, **extra: jax.Array) -> tuple[AgentState, dict]:  # fmt: skip
    """The end of one update of a replay agent (SAC, DQN, DηN): the next `state` from
    the learned `params` and `opt_state`, the `buffer` and
    the collect `carry = (env_state, obs, key)`; and the update's metrics: `stats`
    (`{name: [gradient_steps]}`) averaged, `env_steps`, the `EpisodeStats` summary
    (`episode_return`, `episodes`) and `extra`."""
    env_state, obs, key = carry
    env_steps = state.env_steps + steps_per_update
    new_state = state.replace(params=params, opt_state=opt_state, buffer=buffer, env_state=env_state, obs=obs,
                              key=key, update_step=state.update_step + 1, env_steps=env_steps)  # fmt: skip
    episode_return, episodes = episode_summary(env_state)
    metrics = {k: v.mean() for k, v in stats.items()}
    metrics.update(env_steps=env_steps, episode_return=episode_return, episodes=episodes, **extra)
    return new_state, metrics


def agent_from_pieces(nets: Any, env: Any, cfg: Any, init_state: Callable, update: Callable, act: Callable,
                      *pieces: Any) -> Agent:  # fmt: skip
    """The `Agent` of a replay agent made of module-level pieces with the
    signatures `init_state(nets, env, cfg, c, env_params, key)`, `update(nets, env, cfg,
    c, state, env_params, *pieces)` and `act(nets, params, obs, key, c, deterministic)`;
    its policy params are `state.params` and a run has `c.num_updates` updates."""
    return Agent(
        init=lambda key, c, env_params: init_state(nets, env, cfg, c, env_params, key),
        update=lambda state, c, env_params: update(nets, env, cfg, c, state, env_params, *pieces),
        act=lambda params, obs, key, c, deterministic=True: act(nets, params, obs, key, c, deterministic),
        policy_params=lambda s: s.params,
        num_updates=lambda c: c.num_updates,
        static=static_part(cfg),
    )
