"""Bad inputs to the Python API refuse early: the right exception, one line naming the
field, and no XLA compilation."""

import re

import jax
import numpy as np
import pytest

from rlx import config as C
from rlx import envs
from rlx.agents import dqn, ppo, sac
from rlx.agents.ddp import deep
from rlx.agents.meta import es, lpg, lpg_gym
from rlx.agents.morl import cmorl, moppo
from rlx.envs import meta_grid, registry
from rlx.population import make_population
from rlx.testing import count_compiles

ConfigError, EnvError = C.ConfigError, registry.EnvArgumentError
NAN, INF = float("nan"), float("inf")
W = dict(weights=(0.5, 0.5))
A2C = dict(update_rule="a2c")
PPO = ppo.PPOConfig


def pop(**kw):
    return lambda: make_population(PPO(), **kw)


def over(cfg, items):
    return lambda: C.apply_overrides(cfg, items)


def env(name, **kw):
    return lambda: envs.make(name, **kw)


CASES = [
    # (id, build, exception, regex the message must match)
    ("ppo-int-float", lambda: PPO(num_envs=4.5), ConfigError, r"^PPOConfig\.num_envs = 4\.5 is invalid: it must be an integer\.$"),
    ("ppo-int-str", lambda: PPO(num_envs="4"), ConfigError, r"PPOConfig\.num_envs = '4' .* an integer"),
    ("ppo-int-bool", lambda: PPO(num_steps=True), ConfigError, r"PPOConfig\.num_steps = True .* an integer"),
    ("ppo-int-array", lambda: PPO(num_minibatches=np.array(4)), ConfigError, r"PPOConfig\.num_minibatches .* an integer"),
    ("ppo-float-str", lambda: PPO(lr="1e-3"), ConfigError, r"PPOConfig\.lr = '1e-3' .* a finite number"),
    ("ppo-float-none", lambda: PPO(lr=None), ConfigError, r"PPOConfig\.lr = None .* a finite number"),
    ("ppo-float-nan", lambda: PPO(lr=NAN), ConfigError, r"PPOConfig\.lr = nan .* a finite number"),
    ("ppo-float-inf", lambda: PPO(ent_coef=INF), ConfigError, r"PPOConfig\.ent_coef = inf .* a finite number"),
    ("ppo-float-bool", lambda: PPO(vf_coef=True), ConfigError, r"PPOConfig\.vf_coef = True .* a finite number"),
    ("ppo-float-list", lambda: PPO(reward_scale=[1.0, 2.0]), ConfigError, r"PPOConfig\.reward_scale"),
    ("ppo-bound", lambda: PPO(gamma=1.5), ConfigError, r"PPOConfig\.gamma = 1\.5 .* <= 1"),
    ("ppo-bound-stacked", lambda: PPO(clip_eps=np.array([0.2, -0.1])), ConfigError, r"PPOConfig\.clip_eps = array\(.* > 0"),
    ("ppo-nan-not-finite-field", lambda: PPO(obs_clip=NAN), ConfigError, r"PPOConfig\.obs_clip = nan .* > 0"),
    ("ppo-hidden-negative", lambda: PPO(hidden=(-8,)), ConfigError, r"PPOConfig\.hidden = \(-8,\) .* a tuple of integers >= 1"),
    ("ppo-hidden-float", lambda: PPO(hidden=(8.5,)), ConfigError, r"PPOConfig\.hidden = \(8\.5,\)"),
    ("ppo-hidden-scalar", lambda: PPO(hidden=64), ConfigError, r"PPOConfig\.hidden = 64 .* a tuple"),
    ("ppo-critic-zero", lambda: PPO(critic_hidden=(64, 0)), ConfigError, r"PPOConfig\.critic_hidden"),
    ("ppo-bool-int", lambda: PPO(anneal_lr=1), ConfigError, r"PPOConfig\.anneal_lr = 1 .* True or False"),
    ("ppo-str-int", lambda: PPO(activation=3), ConfigError, r"PPOConfig\.activation = 3 .* one of 'tanh'"),
    ("ppo-choice", lambda: PPO(activation="sigmoid"), ConfigError, r"PPOConfig\.activation = 'sigmoid' .* accepted values"),
    ("sac-int-float", lambda: sac.SACConfig(batch_size=256.0), ConfigError, r"SACConfig\.batch_size = 256\.0 .* an integer"),
    ("sac-bound", lambda: sac.SACConfig(tau=2.0), ConfigError, r"SACConfig\.tau"),
    ("sac-hidden", lambda: sac.SACConfig(critic_hidden=(256, -1)), ConfigError, r"SACConfig\.critic_hidden"),
    ("sac-bool-str", lambda: sac.SACConfig(autotune_alpha="yes"), ConfigError, r"SACConfig\.autotune_alpha"),
    ("sac-inf", lambda: sac.SACConfig(init_alpha=INF), ConfigError, r"SACConfig\.init_alpha = inf"),
    ("dqn-int-float", lambda: dqn.DQNConfig(target_update_period=0.5), ConfigError, r"DQNConfig\.target_update_period"),
    ("dqn-bound", lambda: dqn.DQNConfig(eps_start=-0.1), ConfigError, r"DQNConfig\.eps_start"),
    ("dqn-bool-none", lambda: dqn.DQNConfig(double_q=None), ConfigError, r"DQNConfig\.double_q = None"),
    ("dqn-hidden", lambda: dqn.DQNConfig(hidden=(64, "64")), ConfigError, r"DQNConfig\.hidden"),
    ("c51-atoms", lambda: dqn.C51Config(num_atoms=1), ConfigError, r"C51Config\.num_atoms = 1 .* >= 2"),
    ("c51-nan", lambda: dqn.C51Config(v_min=NAN), ConfigError, r"C51Config\.v_min = nan"),
    ("qr-kappa", lambda: dqn.QRDQNConfig(huber_kappa=-1.0), ConfigError, r"QRDQNConfig\.huber_kappa"),
    ("qr-atoms-float", lambda: dqn.QRDQNConfig(num_atoms=32.0), ConfigError, r"QRDQNConfig\.num_atoms = 32\.0 .* an integer"),
    ("ddp-head-hidden", lambda: deep.DDPConfig(head_hidden=(128, 0)), ConfigError, r"DDPConfig\.head_hidden"),
    ("ddp-params-str", lambda: deep.DDPConfig(objective_params=(0.0, "a", 0.0)), ConfigError, r"DDPConfig\.objective_params"),
    ("ddp-family-float", lambda: deep.DDPConfig(objective_family=1.0), ConfigError, r"DDPConfig\.objective_family = 1\.0 .* an integer"),
    ("ddp-inf", lambda: deep.DDPConfig(stock_spacing=INF), ConfigError, r"DDPConfig\.stock_spacing = inf"),
    ("ddp-int-str", lambda: deep.DDPConfig(horizon="16"), ConfigError, r"DDPConfig\.horizon = '16'"),
    ("moppo-bound", lambda: moppo.MOPPOConfig(barrier_t=0.0, **W), ConfigError, r"MOPPOConfig\.barrier_t"),
    ("moppo-int", lambda: moppo.MOPPOConfig(num_envs=2.5, **W), ConfigError, r"MOPPOConfig\.num_envs = 2\.5"),
    ("moppo-weights", lambda: moppo.MOPPOConfig(), ConfigError, r"MOPPOConfig\.weights is required"),
    ("cmorl-bound", lambda: cmorl.CMORLConfig(beta=1.5), ConfigError, r"CMORLConfig\.beta"),
    ("cmorl-int", lambda: cmorl.CMORLConfig(rounds=2.5), ConfigError, r"CMORLConfig\.rounds"),
    ("cmorl-choice", lambda: cmorl.CMORLConfig(population_mode="pmap"), ConfigError, r"CMORLConfig\.population_mode"),
    ("lpg-hidden", lambda: lpg.LPGConfig(hidden=(-1,), **A2C), ConfigError, r"LPGConfig\.hidden = \(-1,\) .* integers >= 1"),
    ("lpg-hidden-float", lambda: lpg.LPGConfig(hidden=(4.5,), **A2C), ConfigError, r"LPGConfig\.hidden"),
    ("lpg-lifetime", lambda: lpg.LPGConfig(lifetime=2.5, **A2C), ConfigError, r"LPGConfig\.lifetime = 2\.5"),
    ("lpg-nan", lambda: lpg.LPGConfig(lr_pi=NAN, **A2C), ConfigError, r"LPGConfig\.lr_pi = nan"),
    ("lpg-gym-hidden", lambda: lpg_gym.LPGGymConfig(hidden=(0,), **A2C), ConfigError, r"LPGGymConfig\.hidden"),
    ("es-int", lambda: es.ESConfig(population_size=3.5), ConfigError, r"ESConfig\.population_size = 3\.5"),
    ("es-bool", lambda: es.ESConfig(antithetic="no"), ConfigError, r"ESConfig\.antithetic = 'no'"),
    ("grid-dist-tuple", lambda: meta_grid.GridDistribution(episode_length=(20.5, 100)), ConfigError, r"GridDistribution\.episode_length"),
    ("pop-grid-str", pop(grid={"lr": "1e-3"}), ConfigError, r"grid\['lr'\] = '1e-3' is invalid: it must be a list of PPOConfig\.lr values"),
    ("pop-grid-scalar", pop(grid={"lr": 1e-3}), ConfigError, r"grid\['lr'\] = 0\.001"),
    ("pop-grid-set", pop(grid={"lr": {1e-3, 3e-4}}), ConfigError, r"grid\['lr'\]"),
    ("pop-grid-empty", pop(grid={"lr": []}), ConfigError, r"grid\['lr'\] is empty"),
    ("pop-grid-unparsable", pop(grid={"lr": ["abc"]}), ConfigError, r"PPOConfig\.lr: could not parse 'abc' as a float"),
    ("pop-grid-bound", pop(grid={"lr": [1e-3, -1.0]}), ConfigError, r"PPOConfig\.lr = -1\.0"),
    ("pop-grid-nan", pop(grid={"gamma": [0.9, NAN]}), ConfigError, r"PPOConfig\.gamma = nan"),
    ("pop-grid-static", pop(grid={"num_envs": [4, 8]}), ConfigError, r"PPOConfig\.num_envs is a static field"),
    ("pop-grid-unknown", pop(grid={"lrr": [1e-3]}), ConfigError, r"no field 'lrr'\. Did you mean lr\?"),
    ("pop-grid-not-dict", pop(grid=[("lr", [1e-3])]), ConfigError, r"grid = \[.* must be a dict"),
    ("pop-seeds-dup", pop(seeds=[0, 0]), ConfigError, r"seeds = \[0, 0\] .* more than once"),
    ("pop-seeds-negative", pop(seeds=[0, -1]), ConfigError, r"seeds = \[0, -1\] .* >= 0"),
    ("pop-seeds-float", pop(seeds=[0, 1.5]), ConfigError, r"seeds = \[0, 1\.5\]"),
    ("pop-seeds-zero", pop(seeds=0), ConfigError, r"seeds = 0 .* >= 1"),
    ("pop-seeds-str", pop(seeds="3"), ConfigError, r"seeds = '3'"),
    ("pop-seeds-count-float", pop(seeds=2.5), ConfigError, r"seeds = 2\.5"),
    ("over-float", over(PPO(), {"lr": "abc"}), ConfigError, r"^PPOConfig\.lr: could not parse 'abc' as a float$"),
    ("over-int", over(PPO(), ["num_envs=4.5"]), ConfigError, r"PPOConfig\.num_envs: could not parse '4\.5' as an integer"),
    ("over-int-tiny", over(PPO(), {"total_steps": "1e-3"}), ConfigError, r"PPOConfig\.total_steps: could not parse '1e-3'"),
    ("over-int-inf", over(PPO(), {"num_steps": "inf"}), ConfigError, r"PPOConfig\.num_steps: could not parse 'inf'"),
    ("over-bool", over(PPO(), {"anneal_lr": "maybe"}), ConfigError, r"PPOConfig\.anneal_lr: could not parse 'maybe' as a boolean"),
    ("over-tuple", over(PPO(), {"hidden": "32,x"}), ConfigError, r"PPOConfig\.hidden: could not parse 'x' as an integer"),
    ("over-inf", over(sac.SACConfig(), {"lr": "inf"}), ConfigError, r"SACConfig\.lr = inf .* a finite number"),
    ("over-unknown", over(PPO(), ["learning_rate=1"]), ConfigError, r"no field 'learning_rate'"),
    ("over-no-equals", over(PPO(), ["lr"]), ConfigError, r"override 'lr' must look like key=value"),
    ("env-gymnax", env("gymnax/CartPole-v1", foo=1), EnvError, r"^gymnax/CartPole-v1 takes no argument 'foo'; accepted: none\.$"),
    ("env-gymnax-typo", env("gymnax/Breakout-MinAtar", use_minimal_actions=True), EnvError, r"'use_minimal_actions'; accepted: use_minimal_action_set"),
    ("env-mo", env("rlx/deep-sea-treasure", max_steps=3), EnvError, r"'max_steps'; accepted: version, max_steps_in_episode"),
    ("env-tabular", env("rlx/frozen-lake", slipp=0.1), EnvError, r"'slipp'.* Did you mean slip\?"),
    ("env-tabular-filled", env("rlx/random-mdp", key=1), EnvError, r"rlx/random-mdp takes no argument 'key'"),
    ("env-brax", env("brax/ant", n_frame=2), EnvError, r"brax/ant takes no argument 'n_frame'.* n_frames"),
]


@pytest.fixture(scope="module", autouse=True)
def _imports_done():
    """Import the env families once, so the compile counts see only the bad input."""
    for name in ("gymnax/CartPole-v1", "brax/ant", "rlx/fruit-tree"):
        registry.accepted_kwargs(name)


def test_table_is_large():
    assert len(CASES) >= 40


@pytest.mark.parametrize("build, error, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_refused_in_one_line_naming_the_field(build, error, pattern):
    with count_compiles() as compiles:
        with pytest.raises(error) as info:
            build()
    message = str(info.value)
    assert re.search(pattern, message), message
    assert "\n" not in message and message.strip() == message
    assert compiles == []


def test_error_types():
    assert issubclass(ConfigError, ValueError)
    assert issubclass(EnvError, TypeError) and issubclass(EnvError, ValueError)


def test_every_default_config_constructs():
    for build in (ppo.PPOConfig, sac.SACConfig, dqn.DQNConfig, dqn.C51Config, dqn.QRDQNConfig, deep.DDPConfig,
                  cmorl.CMORLConfig, es.ESConfig, meta_grid.GridDistribution, ppo.brax_config, sac.brax_config,
                  lambda: moppo.MOPPOConfig(**W), lambda: moppo.cmorl_config(**W), lambda: lpg.LPGConfig(**A2C),
                  lambda: lpg_gym.LPGGymConfig(**A2C)):  # fmt: skip
        build()


def test_good_values_still_accepted():
    assert ppo.brax_config().obs_clip == INF  # obs_clip opts out of the finiteness check
    assert C.apply_overrides(PPO(), {"obs_clip": "inf", "num_envs": "1e1"}).num_envs == 10
    assert PPO(hidden=[32, 32]).hidden == (32, 32)  # a list becomes a (hashable) tuple
    PPO(lr=1, gamma=np.float32(0.9), num_envs=np.int64(4), anneal_lr=np.bool_(False))
    moppo.MOPPOConfig(weights=(0.5, 0.5), reward_scale=(1.0, 2.0))


def test_population_leaves_validate():
    p = make_population(PPO(), seeds=[3, 5], grid={"clip-eps": [0.1, 0.2], "lr": np.array([1e-3, 3e-4])})
    assert len(p.members) == 8 and p.cfg.clip_eps.shape == (8,)
    assert np.asarray(p.cfg.replace(gamma=np.full(8, 0.9)).gamma).shape == (8,)
    assert make_population(PPO(), 2, {}).cfg.lr.shape == (2,)
    first = jax.tree.map(lambda x: x[0], p.cfg)
    assert float(first.clip_eps) == 0.1
    d = deep.DDPConfig()
    stacked = C.stack([d, d.replace(objective_params=(1.0, 0.0, 0.0), objective_family=0)])
    assert np.asarray(stacked.objective_params[0]).tolist() == [0.0, 1.0]
    stacked.replace(objective_family=np.array([0, 1]))
    with pytest.raises(ConfigError, match=r"DDPConfig\.objective_family .* an integer"):
        stacked.replace(objective_family=np.array([0.0, 1.0]))


def test_tracers_are_not_checked():
    cfg = PPO()
    assert float(jax.jit(lambda c, lr: c.replace(lr=lr).lr)(cfg, 3e-4)) == pytest.approx(3e-4)
    assert float(jax.jit(lambda c: c.replace(lr=-c.lr).lr)(cfg)) < 0  # a traced value is never checked
    lrs = jax.vmap(lambda c: c.lr)(C.stack([cfg, cfg.replace(lr=1e-3)]))
    np.testing.assert_allclose(np.asarray(lrs), [2.5e-4, 1e-3])
    assert jax.eval_shape(lambda c: c, cfg).lr.shape == ()


def test_accepted_env_kwargs_still_work():
    assert envs.make("rlx/fruit-tree", depth=5)[1].max_steps_in_episode == 5
    assert "n_frames" in registry.accepted_kwargs("brax/ant")
