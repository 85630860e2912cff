"""docs/custom-env.md, done exactly as it says: its env file is written as `mysuite.py`,
its Python blocks run in order in one namespace, PPO and DQN beat a random policy on
the env by a margin, five broken versions of the env each fail `check_env` in one line,
and its entry point (a fake installed distribution) makes `rlx list` see the env (and
its `rlx train` and `rlx eval` commands run, in the slow suite). Also: the `rlx.envs`
entry points load lazily, once, and a broken one is one line that leaves the others
working."""

import os
import re
import shlex
import sys
import textwrap
import tomllib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import cli, envs
from rlx.envs import registry as env_registry
from rlx.envs.check import check_env
from rlx.errors import EnvCheckError
from rlx.testing import raises_before_compile

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "custom-env.md")
TEXT = open(DOC).read()
PYTHON = re.findall(r"```python\n(.*?)```", TEXT, re.S)
TOML = re.findall(r"```toml\n(.*?)```", TEXT, re.S)
BASH = re.findall(r"```bash\n(.*?)```", TEXT, re.S)
RANDOM_EPISODES = 4096
MARGIN = 0.5  # above a uniformly random policy's mean return (about 0.11; the best policy's is about 0.9)


@pytest.fixture
def fresh_registry(monkeypatch):
    """An env registry with no session registrations and entry points not yet loaded."""
    monkeypatch.setattr(env_registry, "_REGISTERED", {})
    monkeypatch.setattr(env_registry, "_ENTRY_POINTS", None)
    monkeypatch.setattr(env_registry, "_ENTRY_POINT_ERRORS", [])


def write_module(directory, name: str, source: str) -> None:
    with open(os.path.join(directory, f"{name}.py"), "w") as f:
        f.write(source)


def write_distribution(directory, name: str, entry_points: dict[str, str]) -> None:
    """A minimal installed distribution: `<name>-0.1.0.dist-info` with METADATA and entry_points.txt."""
    info = os.path.join(directory, f"{name}-0.1.0.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as f:
        f.write(f"[{env_registry.ENTRY_POINT_GROUP}]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))


@pytest.fixture
def on_path(tmp_path, monkeypatch):
    """`tmp_path` on sys.path; modules imported from it are forgotten afterwards."""
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in set(sys.modules) - before:
        if getattr(sys.modules[name], "__file__", "") and str(sys.modules[name].__file__).startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.fixture
def tutorial(fresh_registry, on_path):
    """The tutorial's namespace after all its Python blocks ran (mysuite.py written from the first)."""
    assert len(PYTHON) == 4, "the tutorial's blocks: mysuite.py, register + check, PPO, DQN"
    write_module(on_path, "mysuite", PYTHON[0])
    namespace: dict = {}
    for block in PYTHON[1:]:
        exec(compile(block, DOC, "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace


def random_return(env, params, episodes: int = RANDOM_EPISODES) -> float:
    """Mean return of uniformly random actions over `episodes` episodes."""
    horizon = int(params.max_steps_in_episode)

    def episode(key):
        k_reset, k_steps = jax.random.split(key)
        _, state = env.reset(k_reset, params)

        def body(carry, k):
            state, total, alive = carry
            k_act, k_env = jax.random.split(k)
            _, state, reward, terminated, truncated, _ = env.step(k_env, state, env.action_space(params).sample(k_act), params)
            return (state, total + alive * reward, alive & ~(terminated | truncated)), None

        (_, total, _), _ = jax.lax.scan(body, (state, jnp.float32(0.0), jnp.bool_(True)), jax.random.split(k_steps, horizon))
        return total

    return float(jax.jit(jax.vmap(episode))(jax.random.split(jax.random.key(7), episodes)).mean())


def test_the_tutorial_env_registers_passes_check_env_and_trains(tutorial):
    ns = tutorial
    env, params = ns["env"], ns["params"]
    assert "mysuite/corridor" in envs.names()
    report = ns["report"]
    assert report["env"] == "mysuite/corridor" and report["observation"] == {"shape": (2,), "dtype": "float32"}
    assert report["steps"] == 64 and report["episodes_ended"] > 0
    baseline = random_return(env, params)
    assert 0.0 < baseline < 0.3, baseline  # chance reaches the goal in time, but slowly
    for agent, returns in (("PPO", ns["ppo_returns"]), ("DQN", ns["dqn_returns"])):
        assert returns.shape == (2,)
        assert np.all(returns > baseline + MARGIN), f"{agent}: greedy returns {returns} vs random {baseline:.3f}"


# -- five broken corridors --------------------------------------------------------------------------
def broken_corridors(Corridor, CorridorState):
    """The defects of the tutorial's table, each one override of its Corridor."""

    class WrongSpace(Corridor):
        def observation_space(self, params):
            from rlx.envs import Box

            return Box(0.0, 1.0, (3,))

    class IntegerCells(Corridor):
        def observe(self, state):
            return jnp.stack([state.position, state.goal])

    class UnscaledCells(Corridor):
        def observe(self, state):
            return jnp.stack([state.position, state.goal]).astype(jnp.float32)

    class PythonIf(Corridor):
        def step_env(self, key, state, action, params):
            obs, state, reward, reached, info = super().step_env(key, state, action, params)
            if reached:  # a Python branch on a traced value
                reward = reward + 1.0
            return obs, state, reward, reached, info

    class FloatTime(Corridor):
        def step_env(self, key, state, action, params):
            obs, new, reward, reached, info = super().step_env(key, state, action, params)
            return obs, CorridorState(new.position, new.goal, state.time + 1.0), reward, reached, info

    return {
        WrongSpace: r"reset obs: expected shape \(3,\) \(observation_space.shape\), got \(2,\); ",
        IntegerCells: r"reset obs: expected dtype float32 \(observation_space.dtype\), got int32; ",
        UnscaledCells: r"obs: expected values inside observation_space \[low, high\] \(entry \(\d,\): \[0.0, 1.0\]\), "
                       r"got [2-7].0",
        PythonIf: r"step: expected a function that traces under jax.jit, got TracerBoolConversionError",
        FloatTime: r"state: expected step to return a state of the same structure, shapes and dtypes as reset's, "
                   r"got .time \(\) int32 -> \(\) float32; ",
    }  # fmt: skip


def test_five_broken_corridors_fail_check_env_in_one_line(fresh_registry, on_path):
    write_module(on_path, "mysuite", PYTHON[0])
    import mysuite

    _, params = mysuite.make_corridor()
    table = re.findall(r"^\| (.+?) \| `(.+?)`", TEXT[TEXT.index("## What `check_env` catches"):], re.M)
    broken = broken_corridors(mysuite.Corridor, mysuite.CorridorState)
    assert len(table) == len(broken) == 5
    for (cls, message), (defect, documented) in zip(broken.items(), table):
        with pytest.raises(EnvCheckError, match=message) as err:
            check_env(cls(), params, steps=16)
        text = str(err.value)
        assert "\n" not in text and text.startswith("check_env(mysuite/corridor): "), text
        if cls.__name__ != "UnscaledCells":  # its entry and value depend on the key; the others are exact
            assert text == f"check_env(mysuite/corridor): {documented}", (defect, text)


def test_make_agent_stops_the_first_two_before_compiling(fresh_registry, on_path):
    write_module(on_path, "mysuite", PYTHON[0])
    import mysuite

    from rlx.agents import dqn, ppo

    ppo_cfg, dqn_cfg = ppo.PPOConfig(num_envs=4, num_steps=8), dqn.DQNConfig()  # built outside: configs may compile
    broken = list(broken_corridors(mysuite.Corridor, mysuite.CorridorState).items())[:2]
    for name, make_agent, cfg in (("ppo", ppo.make_agent, ppo_cfg), ("dqn", dqn.make_agent, dqn_cfg)):
        for cls, message in broken:
            with raises_before_compile(EnvCheckError, match=rf"^{name}\.make_agent\(mysuite/corridor\): {message}"):
                make_agent(cls(), cfg)


# -- the entry point of the tutorial's CLI section -------------------------------------------------
@pytest.fixture
def installed(fresh_registry, on_path, monkeypatch):
    """mysuite installed as the tutorial says: the module, and a distribution with its entry
    point (from the tutorial's pyproject.toml); the working directory is `on_path`."""
    (project,) = TOML
    spec = tomllib.loads(project)["project"]
    write_module(on_path, "mysuite", PYTHON[0])
    write_distribution(on_path, spec["name"], spec["entry-points"][env_registry.ENTRY_POINT_GROUP])
    monkeypatch.chdir(on_path)
    commands = [shlex.split(line) for line in BASH[0].strip().splitlines()]
    assert [c[:2] for c in commands] == [["rlx", "list"], ["rlx", "train"], ["rlx", "eval"]]
    return [c[1:] for c in commands]


def test_the_entry_point_makes_rlx_list_see_the_env(installed, capsys):
    assert cli.main(installed[0]) == 0
    assert "\n  mysuite/corridor\n" in capsys.readouterr().out
    env, params = envs.make("mysuite/corridor", size=5)
    assert env.size == 5 and type(env).__module__ == "mysuite"
    assert env_registry.entry_point_errors() == []


@pytest.mark.slow
def test_the_tutorial_commands_train_and_evaluate(installed, capsys):
    assert cli.main(installed[1]) == 0
    assert cli.main(installed[2]) == 0
    out = capsys.readouterr().out
    assert "rlx: ppo on mysuite/corridor" in out and "member 1 (seed=1)" in out, out
    assert env_registry.entry_point_errors() == []


# -- entry points: lazy, once, and a broken one is one line ---------------------------------------
def test_entry_points_load_lazily_once_and_a_broken_one_is_one_line(fresh_registry, on_path):
    write_module(on_path, "goodsuite", textwrap.dedent("""
        LOADS = []

        def _make(**kwargs):
            import rlx.envs
            return rlx.envs.make("rlx/probe-constant", **kwargs)

        def register_all():  # the callable form: it registers
            import rlx.envs
            LOADS.append(1)
            rlx.envs.register("goodsuite/constant", _make)

        TABLE = {"tablesuite/constant": _make}  # the dict form
    """))
    write_module(on_path, "brokensuite", "raise ImportError('brokensuite needs a package that is not installed')\n")
    write_module(on_path, "clashsuite", "from rlx.envs.probe import ENVS\nTABLE = {'rlx/probe-constant': print}\n")
    write_distribution(on_path, "goodsuite", {"good": "goodsuite:register_all", "table": "goodsuite:TABLE"})
    write_distribution(on_path, "brokensuite", {"broken": "brokensuite:ENVS"})
    write_distribution(on_path, "clashsuite", {"clash": "clashsuite:TABLE", "number": "clashsuite:ENVS.__len__"})

    env, _ = envs.make("gymnax/CartPole-v1")  # a built-in name: no entry point is loaded
    assert env_registry._ENTRY_POINTS is None
    with pytest.warns(env_registry.EnvEntryPointWarning) as caught:
        names = envs.names()
    assert {"goodsuite/constant", "tablesuite/constant"} <= set(names)
    import goodsuite

    envs.names(), envs.make("goodsuite/constant"), envs.make("tablesuite/constant")
    assert goodsuite.LOADS == [1]  # loaded once
    errors = env_registry.entry_point_errors()
    assert [str(w.message) for w in caught] == errors and len(errors) == 3, errors
    broken, clash, number = sorted(errors)
    for line, name, dist in ((broken, "broken", "brokensuite"), (clash, "clash", "clashsuite"),
                             (number, "number", "clashsuite")):  # fmt: skip
        assert "\n" not in line and f"env entry point {name!r}" in line and f"of {dist} (rlx.envs)" in line, line
        assert line.endswith(f"its envs are left out (fix or uninstall {dist}).")
    assert "ImportError: brokensuite needs a package that is not installed" in broken
    assert "ValueError: env 'rlx/probe-constant' is already registered (by rlx.envs.probe); its envs" in clash
    assert "TypeError: calling it returned a value of type int; name a dict {name: factory} or a function" in number
    assert envs.make("rlx/probe-constant")[0].name == "rlx/probe-constant"  # the built-in one stays
    with pytest.raises(ValueError, match=r"unknown environment 'brokensuite/x'.* Note: env entry point 'broken' = "
                                         r"'brokensuite:ENVS' of brokensuite .*\(2 more in rlx.envs.registry") as err:
        envs.make("brokensuite/x")
    assert "\n" not in str(err.value)


def test_to_gymnax_is_a_deprecated_alias_of_to_env():
    from rlx.envs.tabular import ddp_grid, to_env
    from rlx.envs.tabular.env import to_gymnax

    with pytest.warns(DeprecationWarning, match="to_gymnax is deprecated.*rlx.envs.tabular.to_env"):
        old_env, old_params = to_gymnax(ddp_grid(), max_steps=16)
    env, params = to_env(ddp_grid(), max_steps=16)
    assert type(old_env) is type(env) and old_env.num_states == env.num_states
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), old_params, params))


def test_probe_providers_exist():
    import importlib

    for module in env_registry.PROVIDERS:  # every provider is a real package (rlx.envs.testing never was)
        assert isinstance(importlib.import_module(module).ENVS, dict)
