"""rlx's algorithm families. Importing this package registers every built-in algorithm
in `rlx.registry` (names and import paths only: no agent module is imported here)."""

from rlx.registry import Algorithm, register

register(Algorithm("ppo", "PPO, discrete and continuous (PureJaxRL defaults; preset brax: brax.training's)",
                   "rlx.agents.ppo", "PPOConfig", presets={"default": None, "brax": "brax_config"}, family="ppo",
                   command="rlx train ppo --env gymnax/CartPole-v1"))  # fmt: skip
register(Algorithm("sac", "soft actor-critic, continuous actions", "rlx.agents.sac", "SACConfig",
                   presets={"default": None, "brax": "brax_config"}, family="sac",
                   command="rlx train sac --env gymnax/Pendulum-v1"))  # fmt: skip
for _name, _cls, _summary in (("dqn", "DQNConfig", "DQN (double Q by default)"),
                              ("c51", "C51Config", "categorical distributional DQN"),
                              ("qrdqn", "QRDQNConfig", "quantile-regression DQN")):  # fmt: skip
    register(Algorithm(_name, _summary, "rlx.agents.dqn", _cls, family="dqn",
                       command=f"rlx train {_name} --env gymnax/CartPole-v1"))  # fmt: skip

# The subpackages register their own families.
from rlx.agents import ddp as _ddp  # noqa: E402,F401
from rlx.agents import meta as _meta  # noqa: E402,F401
from rlx.agents import morl as _morl  # noqa: E402,F401

from rlx.lazy import submodules  # noqa: E402

__all__ = ["ppo", "sac", "dqn", "ddp", "meta", "morl"]
__getattr__, __dir__ = submodules(__name__, __all__)
