"""`check_env`: does an environment keep rlx's env interface (`rlx.envs.core`)?

    from rlx.envs.check import check_env
    report = check_env(env, params)  # raises EnvCheckError, or returns what it saw
    check_interface(env, params)     # its cheap part: the methods, the spaces, reset's observation

Agents assume far more than "reset and step run": shapes and dtypes fixed by the spaces,
boolean scalar `terminated`/`truncated` that are never both set, `info["final_obs"]`
shaped like the observation, a step that compiles under `jit` and batches under `vmap`
with the params traced (as the Runner passes them), and the same trajectory for the
same key. A violation usually shows up much later as a shape error deep in an agent's
loss, or not at all. `check_env` tests each of these in a few seconds and raises
`rlx.errors.EnvCheckError` with one line naming the env, the field, what was expected
and what came, and what to do.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, NoReturn

import jax
import jax.numpy as jnp
import numpy as np

from rlx.errors import EnvCheckError

VMAP_KEYS = 4  # the batch that the vmap check runs


class _Checker:
    def __init__(self, env: Any, where: str = "check_env"):
        self.name = getattr(env, "name", None) or type(env).__name__
        self.where = where

    def fail(self, field: str, expected: str, got: Any, fix: str) -> NoReturn:
        got = " ".join(str(got).split())  # one line, whatever the value prints as
        if len(got) > 200:
            got = got[:197] + "..."
        raise EnvCheckError(f"{self.where}({self.name}): {field}: expected {expected}, got {got}; {fix}.")


def _signature_accepts(fn: Any, count: int) -> bool:
    try:
        inspect.signature(fn).bind(*range(count))
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): let the call itself tell
        return True
    return True


def _bounds(space: Any, shape: tuple) -> tuple[np.ndarray, np.ndarray] | None:
    """(low, high) broadcast to `shape`, or None when the space has no bounds."""
    if hasattr(space, "n") and not hasattr(space, "low"):
        return np.zeros(shape), np.full(shape, float(space.n - 1))
    if not hasattr(space, "low"):
        return None
    out = []
    for bound in (space.low, space.high):
        b = np.asarray(bound, np.float64)
        out.append(b.reshape(shape) if b.size == int(np.prod(shape)) and b.ndim <= 1 else np.broadcast_to(b, shape))
    return out[0], out[1]


def _describe(x: Any) -> str:
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"shape {tuple(x.shape)} {jnp.dtype(x.dtype).name}"
    return type(x).__name__


def _leaf_specs(tree: Any) -> list[tuple[str, tuple, str]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(jax.tree_util.keystr(path), tuple(np.shape(v)), jnp.dtype(getattr(v, "dtype", np.asarray(v).dtype)).name)
            for path, v in leaves]  # fmt: skip


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def check_env(env: Any, env_params: Any = None, key: jax.Array | None = None, steps: int = 64) -> dict:
    """Check `env` against rlx's env interface; raise EnvCheckError at the first violation.

    Traces reset and step (as under `jit`, with `env_params` as an argument) to check
    the structure, shapes and dtypes of what they return; compiles `steps` steps of
    random actions in one scan and runs it twice (the same key must give the same
    trajectory, bitwise, and the same program when traced again) to check the values;
    and runs a jitted vmap of reset + step over 4 keys. `env_params`: default
    `env.default_params`; `key`: default `jax.random.key(0)`.

    Returns a report: `{"env", "observation", "action_space", "reward", "steps",
    "episodes_ended", "terminated", "truncated"}` (shapes as tuples, dtypes as names).
    """
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"check_env steps = {steps} is invalid: it must be >= 1.")
    key = jax.random.key(0) if key is None else key
    params = getattr(env, "default_params", None) if env_params is None else env_params
    check = _EnvCheck(env, params, steps)
    key_reset, key_action, key_step, key_rollout = jax.random.split(key, 4)
    reward_dtype = check.traced(key_reset, key_action, key_step)
    ended, terminated, truncated = check.rollout(key_rollout)
    check.batched(key)
    return {
        "env": check.name,
        "observation": {"shape": check.obs_shape, "dtype": check.obs_dtype.name},
        "action_space": repr(check.action_space),
        "reward": {"shape": check.reward_shape, "dtype": reward_dtype},
        "steps": steps,
        "episodes_ended": ended,
        "terminated": terminated,
        "truncated": truncated,
    }


_NO_PARAMS = object()


def check_interface(env: Any, env_params: Any = _NO_PARAMS, where: str = "check_interface") -> None:
    """The cheap part of `check_env`, which every agent's `make_agent` runs before it builds
    anything: reset, step and the two spaces are there and take the right arguments, the
    spaces have a shape and dtype, and reset's observation (traced with `jax.eval_shape`,
    nothing compiled or run) has the observation space's shape and dtype. Raises
    EnvCheckError in one line naming the field (prefixed with `where`); returns None.
    `env_params`: default `env.default_params`, which must then exist."""
    check = _Checker(env, where)
    if env_params is _NO_PARAMS:
        try:
            env_params = env.default_params
        except Exception as err:  # a missing attribute, or a base class's NotImplementedError
            check.fail("default_params", "the params that make and the agents use when none are given",
                       _first_line(err), "give the env a default_params property (None when it takes no params)")  # fmt: skip
    _EnvCheck(env, env_params, steps=1, where=where).traced_reset()


class _EnvCheck(_Checker):
    """The stages of `check_env`: the interface (here), traced shapes (`traced`), a random
    rollout's values (`rollout`) and a vmap over keys (`batched`)."""

    def __init__(self, env: Any, params: Any, steps: int, where: str = "check_env"):
        super().__init__(env, where)
        self.env, self.params, self.steps = env, params, steps
        check = self
        # -- the interface -----------------------------------------------------------------------------
        for method, args, call in (("reset", 2, "reset(key, params)"), ("step", 4, "step(key, state, action, params)"),
                                   ("observation_space", 1, "observation_space(params)"),
                                   ("action_space", 1, "action_space(params)")):  # fmt: skip
            fn = getattr(env, method, None)
            if not callable(fn):
                check.fail(method, f"a method {call}", "nothing" if fn is None else type(fn).__name__,
                           f"give the env a method {call} (see rlx.envs.core)")  # fmt: skip
            if not _signature_accepts(fn, args):
                check.fail(method, f"a method {call}", f"{method}{inspect.signature(fn)}",
                           f"take the arguments {call}, as in rlx.envs.core")  # fmt: skip
        obs_space = env.observation_space(params)
        action_space = env.action_space(params)
        for field, space in (("observation_space", obs_space), ("action_space", action_space)):
            if not (hasattr(space, "shape") and hasattr(space, "dtype")):
                check.fail(field, "a space with shape and dtype (rlx.envs.Box or Discrete)", type(space).__name__,
                           "return rlx.envs.core.Box or Discrete")  # fmt: skip
        if not callable(getattr(action_space, "sample", None)):
            check.fail("action_space", "a space with sample(key)", type(action_space).__name__,
                       "return rlx.envs.core.Box or Discrete")  # fmt: skip
        obs_shape, obs_dtype = tuple(obs_space.shape), jnp.dtype(obs_space.dtype)
        reward_dim = getattr(env, "reward_dim", None)
        reward_shape = () if reward_dim is None else (int(reward_dim),)
        reward_low = getattr(env, "reward_low", None)
        reward_high = getattr(env, "reward_high", None)
        bounds = _bounds(obs_space, obs_shape)
        self.action_space, self.obs_shape, self.obs_dtype = action_space, obs_shape, obs_dtype
        self.reward_dim, self.reward_shape = reward_dim, reward_shape
        self.reward_low, self.reward_high, self.bounds = reward_low, reward_high, bounds

    def check_obs(self, obs: Any, field: str, batch: tuple = ()) -> None:
        """Shape and dtype of `obs` (an array or its abstract value): `batch + observation_space.shape`."""
        check, obs_shape, obs_dtype = self, self.obs_shape, self.obs_dtype
        if not (hasattr(obs, "shape") and hasattr(obs, "dtype")):
            check.fail(field, f"an array of shape {obs_shape}", type(obs).__name__,
                       "return the observation as one array (rlx agents take no pytree observations)")  # fmt: skip
        if tuple(obs.shape) != batch + obs_shape:
            where = f" under a batch of {batch}" if batch else ""
            check.fail(field, f"shape {batch + obs_shape} (observation_space.shape{where})", tuple(obs.shape),
                       "make observation_space(params).shape match the observations")  # fmt: skip
        if jnp.dtype(obs.dtype) != obs_dtype:
            check.fail(field, f"dtype {obs_dtype.name} (observation_space.dtype)", jnp.dtype(obs.dtype).name,
                       "cast the observation or declare its dtype in the space")  # fmt: skip

    def check_obs_values(self, values: np.ndarray, field: str, per_step: bool = True) -> None:
        """`values`: `[rows, *observation_space.shape]` (a row per step when `per_step`), finite
        and inside the space's bounds."""
        check, bounds = self, self.bounds
        if not np.all(np.isfinite(values)):
            check.fail(field, "finite values", f"{int(np.sum(~np.isfinite(values)))} NaN or infinite entries",
                       "fix the env's dynamics or observation")  # fmt: skip
        if bounds is None:
            return
        # Compared in the observation's own dtype: a float32 observation at a float64 bound
        # rounds onto it, not past it.
        cast = values.dtype if values.dtype.kind == "f" else np.float64
        low, high = (b.astype(cast) for b in bounds)
        outside = (values < low) | (values > high)
        if np.any(outside):
            where = tuple(int(j) for j in np.argwhere(outside)[0])
            i, at = where[1:], f" at step {where[0]}" if per_step else ""
            check.fail(field, f"values inside observation_space [low, high] (entry {i}: [{low[i]}, {high[i]}])",
                       f"{values[where]}{at}", "widen the space's bounds or clip the observation")  # fmt: skip

    def check_step_output(self, out: Any, batch: tuple = ()) -> None:
        """The structure, shapes and dtypes of step's output (arrays or abstract values)."""
        check, reward_dim, reward_shape = self, self.reward_dim, self.reward_shape
        if not isinstance(out, tuple) or len(out) != 6:
            got = f"{type(out).__name__} of {len(out)}" if isinstance(out, (tuple, list)) else type(out).__name__
            check.fail("step", "a tuple (obs, state, reward, terminated, truncated, info)", got,
                       "return the six values of rlx.envs.core.Environment.step (auto-resetting)")  # fmt: skip
        obs, _, reward, terminated, truncated, info = out
        self.check_obs(obs, "step obs", batch)
        if tuple(np.shape(reward)) != batch + reward_shape:
            expected = "a scalar ()" if reward_dim is None else f"shape ({reward_dim},) (env.reward_dim)"
            check.fail("reward", expected, f"shape {tuple(np.shape(reward))}",
                       "return a scalar reward, or set env.reward_dim = d for vector rewards of shape (d,)")  # fmt: skip
        if not jnp.issubdtype(reward.dtype, jnp.floating):
            check.fail("reward", "a floating dtype", jnp.dtype(reward.dtype).name, "cast the reward to float32")
        for field, flag in (("terminated", terminated), ("truncated", truncated)):
            if getattr(flag, "dtype", None) != jnp.bool_ or tuple(flag.shape) != batch:
                check.fail(field, "a boolean scalar (shape (), dtype bool)", _describe(flag),
                           f"return {field} as jnp.asarray(..., jnp.bool_) of shape ()")  # fmt: skip
        if not isinstance(info, dict) or "final_obs" not in info:
            got = f"info keys {sorted(info)}" if isinstance(info, dict) else f"info of type {type(info).__name__}"
            check.fail("info['final_obs']", "the last observation of the step's episode in info['final_obs']", got,
                       "auto-reset in step and put the pre-reset observation in info['final_obs']")  # fmt: skip
        final = info["final_obs"]
        if not hasattr(final, "shape") or tuple(final.shape) != tuple(obs.shape) or final.dtype != obs.dtype:
            check.fail("info['final_obs']", f"shape and dtype of obs ({_describe(obs)})", _describe(final),
                       "give final_obs the observation's shape and dtype")  # fmt: skip

    def trace(self, field: str, fn: Any, *args: Any) -> Any:
        """`jax.eval_shape(fn, *args)`: traced as under jit, nothing compiled or run."""
        try:
            return jax.eval_shape(fn, *args)
        except (jax.errors.JAXTypeError, jax.errors.JAXIndexError) as err:
            self.fail(field, "a function that traces under jax.jit", _first_line(err),
                       "replace Python control flow or conversions on array values (if, while, float(), .item()) "
                       "with jnp.where / jax.lax.cond / jax.lax.scan")  # fmt: skip
        except Exception as err:  # the env's own failure, in the checker's words; the cause is chained
            self.fail(field, f"{field} to run on a key, a sampled action and the params", _first_line(err),
                       f"fix {field} (the chained traceback has the cause)")  # fmt: skip

    def traced_reset(self, key: jax.Array | None = None) -> tuple[Any, Any]:
        """reset traced with the params as an argument: `(obs, state)` as abstract values,
        the observation checked against the observation space. Without `key`, the key is
        made inside the trace, so nothing at all is compiled or run."""
        env = self.env
        if key is None:
            reset_out = self.trace("reset", lambda p: env.reset(jax.random.key(0), p), self.params)
        else:
            reset_out = self.trace("reset", env.reset, key, self.params)
        if not isinstance(reset_out, tuple) or len(reset_out) != 2:
            self.fail("reset", "a tuple (obs, state)", type(reset_out).__name__, "return (obs, state) from reset")
        self.check_obs(reset_out[0], "reset obs")
        return reset_out

    def traced(self, key_reset: jax.Array, key_action: jax.Array, key_step: jax.Array) -> str:
        """Structure, shapes and dtypes of reset and step, with params as an argument (as
        agents run them), traced without compiling. Returns the reward's dtype name."""
        check, env, params, action_space = self, self.env, self.params, self.action_space
        trace, check_step_output = self.trace, self.check_step_output
        reset_out = self.traced_reset(key_reset)
        action = trace("action_space.sample", action_space.sample, key_action)
        step_out = trace("step", env.step, key_step, reset_out[1], action, params)
        check_step_output(step_out)
        reset_specs, step_specs = _leaf_specs(reset_out[1]), _leaf_specs(step_out[1])
        if jax.tree.structure(reset_out[1]) != jax.tree.structure(step_out[1]) or reset_specs != step_specs:
            changed = [f"{a[0]} {a[1]} {a[2]} -> {b[1]} {b[2]}" for a, b in zip(reset_specs, step_specs) if a != b]
            got = changed[0] if changed else f"{len(reset_specs)} leaves from reset, {len(step_specs)} from step"
            check.fail("state", "step to return a state of the same structure, shapes and dtypes as reset's", got,
                       "keep the state's pytree fixed (jax.lax.scan over steps needs it)")  # fmt: skip
        return jnp.dtype(step_out[2].dtype).name

    def rollout(self, key_rollout: jax.Array) -> tuple[int, int, int]:
        """`steps` random actions from a reset, compiled and run twice: values, bounds,
        final_obs, terminated/truncated, the same program and trajectory for the same key.
        Returns (episodes ended, terminated, truncated)."""
        check, env, params, steps, action_space = self, self.env, self.params, self.steps, self.action_space
        check_obs_values, reward_low, reward_high = self.check_obs_values, self.reward_low, self.reward_high
        def run(k, p):
            """`steps` steps from a reset: (reset obs, then per step obs, reward, terminated, truncated, final_obs)."""
            k_reset, k_steps = jax.random.split(k)
            obs, s = env.reset(k_reset, p)

            def body(s, k):
                k_act, k_env = jax.random.split(k)
                o, s, r, te, tr, info = env.step(k_env, s, action_space.sample(k_act), p)
                return s, (o, r, te, tr, info["final_obs"])

            return obs, jax.lax.scan(body, s, jax.random.split(k_steps, steps))[1]

        # Same key, same trajectory: numpy or Python randomness at trace time shows as a
        # different program when traced again, randomness at run time as different results.
        # (A new partial each time: jax caches traces by function, and a cached trace would hide it.)
        programs = [jax.make_jaxpr(functools.partial(run))(key_rollout, params) for _ in range(2)]
        consts_equal = len(programs[0].consts) == len(programs[1].consts) and all(
            np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(programs[0].consts, programs[1].consts))
        if str(programs[0]) != str(programs[1]) or not consts_equal:
            check.fail("step", "the same program each time reset and step are traced", "two traces that differ",
                       "draw all randomness from the key argument (no numpy or Python random state)")  # fmt: skip
        compiled = jax.jit(run)
        first, second = compiled(key_rollout, params), compiled(key_rollout, params)
        reset_obs = np.asarray(first[0])
        obs_seq, reward_seq, terminated_seq, truncated_seq, final_seq = (np.asarray(x) for x in first[1])
        check_obs_values(reset_obs[None], "reset obs", per_step=False)
        check_obs_values(obs_seq, "step obs")
        check_obs_values(final_seq, "info['final_obs']")
        both = terminated_seq & truncated_seq
        if np.any(both):
            check.fail("truncated", "truncated to be False whenever terminated is True",
                       f"both True at step {int(np.argmax(both))}", "return truncated & ~terminated")  # fmt: skip
        ended = terminated_seq | truncated_seq
        # Where no episode ended there was no reset, so the final observation is the observation.
        mismatch = ~ended & ~np.all((final_seq == obs_seq).reshape(steps, -1), axis=1)
        if np.any(mismatch):
            check.fail("info['final_obs']", "final_obs equal to obs on steps that end no episode",
                       f"a different value at step {int(np.argmax(mismatch))}",
                       "put the next observation (before any reset) in final_obs, not the previous one")  # fmt: skip
        finite = np.isfinite(reward_seq).reshape(steps, -1).all(axis=1)
        if not np.all(finite):
            check.fail("reward", "finite rewards", f"NaN or infinite at step {int(np.argmin(finite))}", "fix the reward")
        if reward_low is not None and reward_high is not None:
            low = np.asarray(reward_low, np.float64).astype(reward_seq.dtype)
            high = np.asarray(reward_high, np.float64).astype(reward_seq.dtype)
            outside = (reward_seq < low) | (reward_seq > high)
            if np.any(outside):
                step = int(np.argwhere(outside)[0][0])
                check.fail("reward", f"rewards inside [env.reward_low, env.reward_high] = [{low.tolist()}, {high.tolist()}]",
                           f"{reward_seq[step].tolist()} at step {step}", "fix the reward or its declared bounds")  # fmt: skip
        for name, a, b in zip(("obs", "reward", "terminated", "truncated", "info['final_obs']"), first[1], second[1]):
            a, b = np.asarray(a), np.asarray(b)
            if not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                step = int(np.argmin(np.all((a == b).reshape(steps, -1), axis=1)))
                check.fail(name, "the same trajectory for the same key", f"two runs that differ at step {step}",
                           "draw all randomness from the key argument (no numpy or Python random state)")  # fmt: skip
        return int(np.sum(ended)), int(np.sum(terminated_seq)), int(np.sum(truncated_seq))

    def batched(self, key: jax.Array) -> None:
        """reset + step jitted under a vmap over `VMAP_KEYS` keys."""
        check, env, params, action_space = self, self.env, self.params, self.action_space
        def reset_and_step(k):
            k_reset, k_act, k_env = jax.random.split(k, 3)
            _, s = env.reset(k_reset, params)
            return env.step(k_env, s, action_space.sample(k_act), params)

        try:
            batched = jax.jit(jax.vmap(reset_and_step))(jax.random.split(key, VMAP_KEYS))
        except Exception as err:
            check.fail("step", "reset and step to batch under jax.vmap", _first_line(err),
                       "use jax.numpy ops that broadcast (no Python branches on array shapes or values)")  # fmt: skip
        self.check_step_output(tuple(batched), batch=(VMAP_KEYS,))


__all__ = ["check_env", "check_interface", "EnvCheckError"]
