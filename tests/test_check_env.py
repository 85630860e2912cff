"""rlx.envs.check.check_env: registered envs pass; envs broken one way each fail naming the field."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import envs
from rlx.envs.check import check_env, check_interface
from rlx.envs.core import Box
from rlx.envs.probe import ENVS as PROBES
from rlx.envs.wrappers import Wrapper
from rlx.errors import EnvCheckError

CHEAP = sorted(PROBES) + ["gymnax/CartPole-v1", "rlx/deep-sea-treasure"]


@pytest.mark.parametrize("name", CHEAP)
def test_registered_envs_pass(name):
    env, params = envs.make(name)
    report = check_env(env, params, steps=32)
    assert report["observation"] == {"shape": tuple(env.observation_space(params).shape), "dtype": "float32"}
    reward_dim = getattr(env, "reward_dim", None)
    assert report["reward"]["shape"] == (() if reward_dim is None else (reward_dim,))
    assert report["episodes_ended"] == report["terminated"] + report["truncated"] <= 32


def test_report_counts_episodes():
    env, params = envs.make("rlx/probe-constant")  # every episode is one step long
    assert check_env(env, steps=16)["terminated"] == 16  # params default to env.default_params
    env, params = envs.make("rlx/probe-discount")  # two steps long
    assert check_env(env, params, steps=16)["terminated"] == 8


# -- envs broken one way each ----------------------------------------------------------------------
class WrongObservationShape(Wrapper):
    def observation_space(self, params=None):
        return Box(-1.0, 1.0, (2,))


class IntegerObservations(Wrapper):
    def reset(self, key, params=None):
        obs, state = self.env.reset(key, params)
        return obs.astype(jnp.int32), state

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        final_obs = info["final_obs"].astype(jnp.int32)
        return obs.astype(jnp.int32), state, reward, terminated, truncated, {"final_obs": final_obs}


class ObservationsOutOfBounds(Wrapper):
    def reset(self, key, params=None):
        obs, state = self.env.reset(key, params)
        return 3 * obs, state

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        return 3 * obs, state, reward, terminated, truncated, {"final_obs": 3 * info["final_obs"]}


class NoFinalObs(Wrapper):
    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        return obs, state, reward, terminated, truncated, {}


class StaleFinalObs(Wrapper):
    """final_obs is the observation before the step, not after it."""

    def reset(self, key, params=None):
        obs, state = self.env.reset(key, params)
        return obs, (state, obs)

    def step(self, key, state, action, params=None):
        inner, previous = state
        obs, inner, reward, terminated, truncated, info = self.env.step(key, inner, action, params)
        return obs, (inner, obs), reward, terminated, truncated, {"final_obs": previous}


class FloatTerminated(Wrapper):
    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        return obs, state, reward, terminated.astype(jnp.float32), truncated, info


class TruncatedWithTerminated(Wrapper):
    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        return obs, state, reward, terminated, terminated | truncated, info


class VectorRewardUndeclared(Wrapper):
    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        return obs, state, jnp.stack([reward, reward]), terminated, truncated, info


class PythonControlFlow(Wrapper):
    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        if terminated:  # a Python branch on a traced value: fine eagerly, fails under jit
            reward = reward * 2
        return obs, state, reward, terminated, truncated, info


class HostRandomness(Wrapper):
    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        return obs, state, reward + np.random.normal(), terminated, truncated, info  # noqa: NPY002


class GrowingState(Wrapper):
    def reset(self, key, params=None):
        obs, state = self.env.reset(key, params)
        return obs, (state, jnp.zeros((), jnp.int32))

    def step(self, key, state, action, params=None):
        obs, inner, reward, terminated, truncated, info = self.env.step(key, state[0], action, params)
        return obs, (inner, jnp.zeros((), jnp.float32)), reward, terminated, truncated, info


class NoParamsArgument(Wrapper):
    def step(self, key, state, action):
        return self.env.step(key, state, action, None)


@pytest.mark.parametrize("broken, probe, message", [
    (WrongObservationShape, "constant", r"reset obs: expected shape \(2,\) \(observation_space.shape\), got \(1,\)"),
    (IntegerObservations, "constant", r"reset obs: expected dtype float32 \(observation_space.dtype\), got int32"),
    (ObservationsOutOfBounds, "constant", r"reset obs: expected values inside observation_space \[low, high\]"
                                          r" \(entry \(0,\): \[-1.0, 1.0\]\), got 3.0;"),
    (NoFinalObs, "constant", r"info\['final_obs'\]: expected the last observation .* got info keys \[\]"),
    (StaleFinalObs, "discount", r"info\['final_obs'\]: expected final_obs equal to obs on steps that end no episode"),
    (FloatTerminated, "constant",
     r"terminated: expected a boolean scalar \(shape \(\), dtype bool\), got shape \(\) float32"),
    (TruncatedWithTerminated, "constant", r"truncated: expected truncated to be False whenever terminated is True"),
    (VectorRewardUndeclared, "constant", r"reward: expected a scalar \(\), got shape \(2,\)"),
    (PythonControlFlow, "constant", r"step: expected a function that traces under jax.jit, got TracerBoolConversionError"),
    (HostRandomness, "constant", r"step: expected the same program each time reset and step are traced"),
    (GrowingState, "constant", r"state: expected step to return a state of the same structure, shapes and dtypes as "
                               r"reset's, got \[1\] \(\) int32 -> \(\) float32"),
    (NoParamsArgument, "constant",
     r"step: expected a method step\(key, state, action, params\), got step\(key, state, action\)"),
])  # fmt: skip
def test_broken_env_fails_naming_the_field(broken, probe, message):
    env, params = envs.make(f"rlx/probe-{probe}")
    with pytest.raises(EnvCheckError, match=message) as err:
        check_env(broken(env), params, steps=8)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"check_env(rlx/probe-{probe}): ")
    assert "; " in text  # and then what to do


def test_python_control_flow_runs_eagerly():
    # The control case for the jit check: the same step is fine without tracing.
    env, params = envs.make("rlx/probe-constant")
    broken = PythonControlFlow(env)
    obs, state = broken.reset(jax.random.key(0), params)
    assert broken.step(jax.random.key(1), state, jnp.int32(1), params)[2] == 2.0


def test_steps_must_be_positive():
    env, params = envs.make("rlx/probe-constant")
    with pytest.raises(ValueError, match="steps"):
        check_env(env, params, steps=0)


# -- check_interface: the cheap part, run by every make_agent -------------------------------------
def test_check_interface_passes_registered_and_wrapped_envs_without_compiling():
    from rlx.envs import stock
    from rlx.envs.tabular import ddp_grid, to_env
    from rlx.testing import count_compiles

    made = [envs.make(name) for name in CHEAP + ["gymnax/Pendulum-v1", "gymnax/Breakout-MinAtar"]]
    inner, inner_params = to_env(ddp_grid(), max_steps=16)
    made.append((inner, inner_params))
    for env, params in made:  # gymnax builds some spaces with jnp ops: compiled once, before the count
        env.observation_space(params), env.action_space(params)
    with count_compiles() as compiles:
        for env, params in made:
            check_interface(env, params)
            check_interface(env)  # params default to env.default_params
    assert compiles == []
    # The stock-augmented env's observation is a dict: DηN checks its inner env instead.
    with pytest.raises(EnvCheckError, match=r"^check_interface\(Stock\(tabular\)\): observation_space: expected a space"):
        check_interface(stock.StockWrapper(inner))


class NoReset:
    name = "no-reset"
    default_params = None

    def step(self, key, state, action, params):
        raise AssertionError("never called")

    def observation_space(self, params):
        return Box(0.0, 1.0, (1,))

    def action_space(self, params):
        return Box(0.0, 1.0, (1,))


class NoDefaultParams(Wrapper):
    @property
    def default_params(self):  # as rlx.envs.Environment's, not overridden
        raise NotImplementedError


class SpaceWithoutShape(Wrapper):
    def observation_space(self, params=None):
        return "a box"


@pytest.mark.parametrize("broken, message", [
    (lambda env: WrongObservationShape(env), r"reset obs: expected shape \(2,\) \(observation_space.shape\), got \(1,\); "),
    (lambda env: IntegerObservations(env), r"reset obs: expected dtype float32 \(observation_space.dtype\), got int32; "),
    (lambda env: NoParamsArgument(env), r"step: expected a method step\(key, state, action, params\), got "),
    (lambda env: NoReset(), r"reset: expected a method reset\(key, params\), got nothing; "),
    (lambda env: NoDefaultParams(env), r"default_params: expected the params .* got NotImplementedError; give the env a default_params property"),
    (lambda env: SpaceWithoutShape(env), r"observation_space: expected a space with shape and dtype .* got str; "),
])  # fmt: skip
def test_check_interface_names_the_field_in_one_line(broken, message):
    from rlx.testing import count_compiles

    env, params = envs.make("rlx/probe-constant")
    with count_compiles() as compiles, pytest.raises(EnvCheckError, match=message) as err:
        check_interface(broken(env), where="ppo.make_agent")
    text = str(err.value)
    assert "\n" not in text and re.match(r"ppo\.make_agent\((rlx/probe-constant|no-reset)\): ", text), text
    assert compiles == []


@pytest.mark.parametrize("algo", ["ppo", "dqn", "sac", "ddp"])
def test_make_agent_checks_the_env_before_building_networks(algo):
    """A wrong observation_space is one line from make_agent, before anything compiles
    (it used to be flax's ScopeParamShapeError inside the network's init)."""
    from rlx.agents import dqn, ppo, sac
    from rlx.agents.ddp import deep
    from rlx.envs.tabular import ddp_grid, to_env
    from rlx.testing import raises_before_compile

    if algo == "ddp":
        env, _ = to_env(ddp_grid(), max_steps=16, name="ddp-grid")
        make_agent, cfg, where = deep.make_agent, deep.DDPConfig(horizon=16), "ddp.deep.make_agent"

        class Wrong(type(env)):
            def observation_space(self, params):
                return Box(0.0, 1.0, (3,))

        broken = Wrong(env.num_states, env.num_actions, env.default_params, env.name)
        shape = rf"\(3,\) \(observation_space.shape\), got \({env.num_states},\)"
    else:
        name = "gymnax/Pendulum-v1" if algo == "sac" else "rlx/probe-constant"
        env, _ = envs.make(name)
        module = {"ppo": ppo, "dqn": dqn, "sac": sac}[algo]
        cfg = {"ppo": ppo.PPOConfig, "dqn": dqn.DQNConfig, "sac": sac.SACConfig}[algo]()
        make_agent, where = module.make_agent, f"{algo}.make_agent"
        space = Box(-1.0, 1.0, (5,))
        broken = type("Wrong", (Wrapper,), {"observation_space": lambda self, params=None: space})(env)
        shape = rf"\(5,\) \(observation_space.shape\), got \({env.observation_space(env.default_params).shape[0]},\)"
    with raises_before_compile(EnvCheckError, match=rf"^{re.escape(where)}\(.*\): reset obs: expected shape {shape}"):
        make_agent(broken, cfg)
