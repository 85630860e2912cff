"""Golden cases: tiny, fixed-seed runs of every agent family.

`scripts/record_golden.py` stores `outputs(name)` in `tests/golden/<name>.npz`;
`tests/test_golden.py` recomputes it and asks for bitwise equality. Import this after
the test process setup (8 fake CPU devices, CPU async dispatch off, as in
tests/conftest.py): results are only pinned for that setup.

Each case's `run()` returns `(metrics, state)`: `metrics` a dict of arrays (per update
for single runs), `state` the final pytree whose leaves are hashed.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

SEED = 0
TINY_PPO = dict(num_envs=4, num_steps=16, total_steps=4 * 16 * 6, num_minibatches=2, update_epochs=2)
TINY_DQN = dict(
    num_envs=4, rollout_steps=2, utd=0.25, learning_starts=64, total_steps=64 + 8 * 12, buffer_size=80,
    batch_size=16, hidden=(16,), num_atoms=8, target_update_period=3,
)  # fmt: skip
TINY_SAC = dict(
    num_envs=2, rollout_steps=2, utd=0.5, learning_starts=64, total_steps=128, buffer_size=96,
    batch_size=32, hidden=(16, 16), critic_hidden=(16, 16), normalize_obs=True,
)  # fmt: skip
TINY_BRAX = dict(
    num_envs=16, num_steps=20, total_steps=16 * 20 * 2, num_minibatches=4, update_epochs=2,
    hidden=(16, 16), critic_hidden=(32, 32),
)  # fmt: skip
TINY_DDP = dict(
    num_envs=8, learning_starts=64, total_steps=64 + 8 * 24, utd=0.5, batch_size=32, buffer_size=256,
    target_update_period=10, hidden=(16,), head_hidden=(16,), lr=3e-3, stock_spacing=1.0,
)  # fmt: skip
TINY_MORL = dict(num_envs=4, num_steps=16, num_minibatches=2, update_epochs=2, hidden=(32, 32), critic_hidden=(32, 32))
# "map": the mode whose members are bitwise equal to solo runs, as when this case was recorded
# (auto meant map then; it means vmap now, whose batched kernels round differently).
TINY_CMORL = dict(init_divisions=2, init_updates=3, rounds=1, num_select=1, constrained_updates=3, population_mode="map")
TINY_LPG = dict(num_envs=2, num_steps=4, meta_hidden=4, phi_hidden=4, y_bins=4, max_lifetime=8)


class Case(NamedTuple):
    settings: str  # for the README table
    run: Callable[[], tuple[dict, Any]]


def _single(agent, cfg, env_params):
    from rlx.train import make_train

    state, metrics = jax.jit(make_train(agent, cfg))(jax.random.key(SEED), cfg, env_params)
    return metrics, state


def ppo_cartpole():
    from rlx import envs
    from rlx.agents import ppo

    env, params = envs.make("gymnax/CartPole-v1")
    cfg = ppo.PPOConfig(**TINY_PPO)
    return _single(ppo.make_agent(env, cfg), cfg, params)


def ppo_brax():
    from rlx import envs
    from rlx.agents import ppo

    env, params = envs.make("brax/inverted_pendulum", backend="generalized")
    cfg = ppo.brax_config(**TINY_BRAX)
    return _single(ppo.make_agent(env, cfg), cfg, params)


def sac_pendulum():
    from rlx import envs
    from rlx.agents import sac

    env, params = envs.make("gymnax/Pendulum-v1")
    cfg = sac.SACConfig(**TINY_SAC)
    return _single(sac.make_agent(env, cfg), cfg, params)


def _dqn(cls_name: str, double_q: bool):
    def run():
        from rlx import envs
        from rlx.agents import dqn

        env, params = envs.make("gymnax/CartPole-v1")
        cfg = getattr(dqn, cls_name)(**TINY_DQN, double_q=double_q)
        return _single(dqn.make_agent(env, cfg), cfg, params)

    return run


def ddp_deep_grid():
    from rlx.agents.ddp import deep
    from rlx.agents.ddp import objectives as O
    from rlx.envs.tabular import ddp_grid, to_env

    mdp = ddp_grid(False)
    env, params = to_env(mdp, max_steps=16)
    cfg = deep.config_for_mdp(mdp, 16, O.target(0.0), c0_range=(-40.0, 16.0), **TINY_DDP)
    return _single(deep.make_agent(env, cfg), cfg, params)


def moppo_dst():
    from rlx import envs
    from rlx.agents.morl import moppo

    env, params = envs.make("rlx/deep-sea-treasure")
    cfg = moppo.MOPPOConfig(weights=(0.3, 0.7), normalize_obs=True, **TINY_PPO)
    return _single(moppo.make_agent(env, cfg), cfg, params)


def cmorl_dst():
    from rlx import envs
    from rlx.agents.morl import cmorl, moppo

    env, params = envs.make("rlx/deep-sea-treasure")
    cfg = moppo.MOPPOConfig(weights=(0.5, 0.5), normalize_obs=True, **TINY_MORL)
    r = cmorl.run(env, params, cfg, cmorl.CMORLConfig(**TINY_CMORL), seed=SEED)
    metrics = dict(points=r.points, undiscounted=r.undiscounted, ids=r.ids, all_points=r.all_points,
                   env_steps=r.env_steps, eval_steps=r.eval_steps)  # fmt: skip
    for k in r.history[0]:
        values = [row.get(k) for row in r.history]
        if all(isinstance(v, (int, float, np.number)) for v in values):
            metrics[f"history_{k}"] = np.asarray(values)
    return metrics, r.policies


def _es_outputs(trainer):
    """One generation of `trainer.run()`, plus every candidate's scores `[P, T]` of it."""
    result = trainer.run()
    k_ask, k_inner, _ = trainer.generation_keys(0)
    thetas, _ = trainer.strategy.ask(k_ask, trainer.init_state(), trainer.strategy.default_params)
    metrics = {k: v for k, v in result.history.items() if k != "seconds"}
    metrics["candidate_scores"] = trainer.evaluate(trainer.inner_keys(k_inner), thetas)
    return metrics, (result.mean, result.best, result.state)


def lpo_es():
    from rlx import envs
    from rlx.agents import ppo
    from rlx.agents.meta import drifts
    from rlx.agents.meta.es import ESConfig, MetaTask, MetaTrainer
    from rlx.train import make_train

    env, env_params = envs.make("gymnax/CartPole-v1")
    init = drifts.init_params("lpo_ppo_init", jax.random.key(SEED), hidden=8)
    cfg = ppo.PPOConfig(**TINY_PPO, drift="lpo_ppo_init", drift_params=init)
    # The final return of 6 tiny updates barely depends on the drift; the summed policy loss does.
    train = jax.jit(make_train(drifts.make_agent(env, cfg), cfg))
    task = MetaTask("cartpole", train, cfg, env_params, 2.0, lambda s, m: m["policy_loss"].sum())
    es = ESConfig(population_size=4, generations=1, sigma=1.0, eval_every=0, seed=SEED)
    return _es_outputs(MetaTrainer([task], "drift_params", init, es, progress=False))


def lpg_es():
    from rlx.agents.meta import lpg
    from rlx.agents.meta.es import ESConfig, MetaTask, MetaTrainer
    from rlx.envs import meta_grid as mg

    env = mg.MetaGrid(max_size=3, max_objects=1)
    dist = mg.GridDistribution(min_size=2, max_size=3, max_objects=1, walls=1, episode_length=(5, 15), lifetime=(3, 8))
    init = lpg.init_params(jax.random.key(SEED), True, hidden=4, y_bins=4, phi_hidden=4)
    cfg = lpg.LPGConfig(**TINY_LPG, temporal=True, lpg_params=init)
    task = MetaTask("grid", lpg.make_task_train(env, cfg, dist, 2), cfg, None)
    es = ESConfig(population_size=4, generations=1, sigma=0.1, lr=0.01, eval_every=0, seed=SEED)
    return _es_outputs(MetaTrainer([task], "lpg_params", init, es, progress=False))


CASES: dict[str, Case] = {
    "ppo_cartpole": Case(f"gymnax/CartPole-v1, PPOConfig(**{TINY_PPO})", ppo_cartpole),
    "dqn_cartpole": Case(f"gymnax/CartPole-v1, DQNConfig(**{TINY_DQN}, double_q=True)", _dqn("DQNConfig", True)),
    "c51_cartpole": Case("gymnax/CartPole-v1, C51Config(same as dqn_cartpole, double_q=False)", _dqn("C51Config", False)),
    "qrdqn_cartpole": Case("gymnax/CartPole-v1, QRDQNConfig(same as dqn_cartpole, double_q=False)",
                           _dqn("QRDQNConfig", False)),
    "sac_pendulum": Case(f"gymnax/Pendulum-v1, SACConfig(**{TINY_SAC})", sac_pendulum),
    "ppo_brax": Case(f"brax/inverted_pendulum (generalized), ppo.brax_config(**{TINY_BRAX})", ppo_brax),
    "ddp_deep_grid": Case(f"ddp_grid(False), H=16, deep.config_for_mdp(target(0), c0_range=(-40, 16), **{TINY_DDP})",
                          ddp_deep_grid),
    "moppo_dst": Case(f"rlx/deep-sea-treasure, MOPPOConfig(weights=(0.3, 0.7), normalize_obs=True, **{TINY_PPO})",
                      moppo_dst),
    "cmorl_dst": Case(f"rlx/deep-sea-treasure, MOPPOConfig(weights=(0.5, 0.5), normalize_obs=True, **{TINY_MORL}), "
                      f"CMORLConfig(**{TINY_CMORL})", cmorl_dst),
    "lpo_es": Case(f"one OpenES generation (population 4, sigma 1) over lpo_ppo_init drift_params (hidden 8) of "
                   f"PPOConfig(**{TINY_PPO}) on CartPole, fitness: summed policy loss / 2", lpo_es),
    "lpg_es": Case(f"one OpenES generation (population 4, sigma 0.1) over TA-LPG lpg_params, LPGConfig(**{TINY_LPG}), "
                   "MetaGrid(3, 1), 2 levels per run", lpg_es),
}  # fmt: skip


def _host(x) -> np.ndarray:
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.ascontiguousarray(np.asarray(x))


def as_stored(x) -> np.ndarray:
    """Floats as float64, integers and booleans as int64 (both exact)."""
    a = _host(x)
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float64)
    if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        return a.astype(np.int64)
    raise TypeError(f"metric of dtype {a.dtype} cannot be stored")


def state_hashes(state: Any) -> tuple[str, list[str], list[str]]:
    """sha256 over every leaf's bytes in tree order (typed keys as key_data), and per leaf."""
    total = hashlib.sha256()
    paths, digests = [], []
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        b = _host(leaf).tobytes()
        total.update(b)
        paths.append(jax.tree_util.keystr(path))
        digests.append(hashlib.sha256(b).hexdigest())
    return total.hexdigest(), paths, digests


def outputs(name: str) -> dict[str, np.ndarray]:
    """What `tests/golden/<name>.npz` holds: `metrics.<k>` arrays and the state hashes."""
    metrics, state = CASES[name].run()
    out = {f"metrics.{k}": as_stored(v) for k, v in jax.device_get(metrics).items()}
    digest, paths, digests = state_hashes(state)
    out.update(state_sha256=np.asarray(digest), state_leaf_paths=np.asarray(paths),
               state_leaf_sha256=np.asarray(digests), jax_version=np.asarray(jax.__version__))  # fmt: skip
    return out


def cpu_fingerprint() -> str:
    """12 hex digits naming this CPU's XLA code generation: a hash of the bits of a small
    training-like program (matmuls, tanh, log-softmax, long reductions, 20 gradient steps),
    of the CPU's vector flags and of the jax version. Machines whose vector units differ (AVX2 or AVX-512, say)
    round differently, and their golden records are kept apart."""
    import jax.numpy as jnp

    kx, k1, k2 = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (64, 37))
    w = (0.1 * jax.random.normal(k1, (37, 64)), 0.1 * jax.random.normal(k2, (64, 5)))

    def loss(w):
        logits = jnp.tanh(x @ w[0]) @ w[1]
        return -jnp.mean(jax.nn.log_softmax(logits)[:, 0]) + 1e-3 * jnp.sum(jnp.exp(-w[0] ** 2))

    def step(_, w):
        return jax.tree.map(lambda a, g: a - 0.1 * g, w, jax.grad(loss)(w))

    w = jax.jit(lambda w: jax.lax.fori_loop(0, 20, step, w))(w)
    out = np.concatenate([np.asarray(a).ravel() for a in w] + [np.asarray(jnp.cumsum(jnp.sin(x.ravel())))])
    return hashlib.sha256(out.tobytes() + jax.__version__.encode() + _vector_flags().encode()).hexdigest()[:12]


def _vector_flags() -> str:
    """The CPU's vector-instruction flags (Linux), which XLA's code generation follows."""
    import re

    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return ""
    return " ".join(sorted(x for x in flags if re.match(r"(avx|fma|sse|amx|f16c|vnni)", x)))


def records_dir(golden: str) -> str:
    """Where this CPU's records live: `golden/cpu-<fingerprint>/` when it exists, else
    `golden/` itself (the records made before fingerprints were kept)."""
    import os

    labelled = os.path.join(golden, f"cpu-{cpu_fingerprint()}")
    return labelled if os.path.isdir(labelled) else golden


def check_setup() -> None:
    if len(jax.devices()) != 8 or jax.default_backend() != "cpu":
        raise RuntimeError("golden cases are pinned for 8 fake CPU devices (see tests/conftest.py)")


__all__ = ["CASES", "Case", "outputs", "state_hashes", "as_stored", "check_setup", "cpu_fingerprint", "records_dir"]
