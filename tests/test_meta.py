"""Meta-learned objectives: drift constraints (property test), DPO's closed form, LPO with
PPO-init equal to PPO, drift populations through PPO's config, and the ES meta-trainer
(toy convergence, exact resume, sharding, chunking, bad input)."""

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlx.agents import ppo
from rlx.agents.meta import drifts
from rlx.agents.meta.es import ESConfig, MetaTask, MetaTrainer, final_return, load_params
from rlx.config import config, traced
from rlx.errors import ResumeMismatchError
from rlx.train import make_train

from conftest import TINY_PPO


# -- drifts ---------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnums=0)
def _constraint_report(kind_index, params, ratio, adv, clip_eps, progress):
    """(min D(r, A), max |D(1, A)|, max |dD/dr(1, A)|) for one drift kind."""
    kind = drifts.KINDS[kind_index]

    def d(r, a):
        return drifts.drift(kind, params, r, a, clip_eps, progress)

    ones = jnp.ones_like(adv)
    grad = jax.vmap(jax.grad(lambda r, a: d(r[None], a[None])[0]))(ones, adv)
    return d(ratio, adv).min(), jnp.abs(d(ones, adv)).max(), jnp.abs(grad).max()


@settings(max_examples=60, deadline=None)
@given(
    kind_index=st.integers(0, len(drifts.KINDS) - 1),
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(0.0, 10.0),
    adv=st.lists(st.floats(-20, 20, allow_nan=False, width=32), min_size=16, max_size=16),
    progress=st.floats(0.0, 1.0),
    clip_eps=st.floats(0.05, 0.5),
)
def test_every_drift_is_nonnegative_and_flat_zero_at_ratio_one(kind_index, seed, scale, adv, progress, clip_eps):
    """D >= 0 everywhere, D(1, A) = 0 and dD/dr(1, A) = 0, for random network weights (and
    random DPO α, β), advantages, clip ε and training progress n/N."""
    kind = drifts.KINDS[kind_index]
    k_params, k_ratio = jax.random.split(jax.random.key(seed))
    params = drifts.init_params(kind, k_params, hidden=16, scale=scale)
    if kind == "dpo":
        params = {"alpha": jnp.float32(0.1 + scale), "beta": jnp.float32(0.05 + scale / 2)}
    a = jnp.asarray(adv, jnp.float32)
    ratio = jnp.exp(jax.random.normal(k_ratio, a.shape) * 1.5)
    low, at_one, slope_at_one = _constraint_report(kind_index, params, ratio, a, clip_eps, progress)
    assert float(low) >= 0.0, "drift went negative"
    assert float(at_one) == 0.0
    assert float(slope_at_one) == 0.0


def test_lpo_without_offset_would_have_a_gradient_at_ratio_one():
    """The test above can fail: the bare network f has a nonzero slope at r = 1; only the
    δ offset inside the ReLU makes D flat there."""
    params = drifts.init_params("lpo", jax.random.key(0), hidden=16)
    g = jax.grad(lambda r: drifts.lpo_network(params, drifts.features(r[None], jnp.ones(1)))[0])(1.0)
    assert abs(float(g)) > 1e-3


def test_zero_head_start_is_no_drift_and_breaks_the_antithetic_symmetry_of_all_zeros():
    """From all-zero weights θ and -θ are the same drift (tanh is odd), so an antithetic ES
    pair ties; the zero-head start is also D ≡ 0 but its ±σz pairs are different drifts."""
    ratio = jnp.exp(jax.random.normal(jax.random.key(2), (64,)) * 0.5)
    adv = jax.random.normal(jax.random.key(3), (64,))
    z = drifts.init_params("lpo", jax.random.key(4), hidden=16)
    plus = lambda p: jax.tree.map(lambda a, b: a + 0.1 * b, p, z)  # noqa: E731
    minus = lambda p: jax.tree.map(lambda a, b: a - 0.1 * b, p, z)  # noqa: E731
    d = lambda p: drifts.drift("lpo", p, ratio, adv)  # noqa: E731

    zeros = drifts.init_params("lpo", None, hidden=16)
    np.testing.assert_array_equal(d(plus(zeros)), d(minus(zeros)))
    head = drifts.init_params("lpo", jax.random.key(5), hidden=16, zero_head=True)
    assert float(jnp.abs(head["w1"]).max()) > 0
    np.testing.assert_array_equal(d(head), jnp.zeros(64))
    assert float(jnp.abs(d(plus(head)) - d(minus(head))).max()) > 1e-3


def test_dpo_matches_hand_computed_values():
    # A >= 0: (r-1)A - 2 tanh((r-1)A/2);  A < 0: log(r)A - 0.6 tanh(log(r)A/0.6), then ReLU.
    r = jnp.array([1.5, 3.0, 0.5, 0.5, 2.0, 1.0])
    a = jnp.array([2.0, 1.0, -1.0, 3.0, -0.5, -4.0])
    expected = [
        1.0 - 2.0 * math.tanh(0.5),  # 0.0757657
        2.0 - 2.0 * math.tanh(1.0),  # 0.4768116
        math.log(2.0) - 0.6 * math.tanh(math.log(2.0) / 0.6),  # -log(.5)·1
        0.0,  # (r-1)A = -1.5 < 0 -> x - 2 tanh(x/2) < 0 -> ReLU 0
        0.0,  # log(2)·(-0.5) < 0 -> negative -> 0
        0.0,
    ]
    np.testing.assert_allclose(np.asarray(drifts.drift("dpo", None, r, a)), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(float(expected[0]), 0.0757657, rtol=1e-5)


def test_lpo_ppo_init_with_zero_head_is_ppo_loss_and_gradient_exactly():
    rng = np.random.default_rng(0)
    log_ratio = jnp.asarray(rng.normal(scale=0.4, size=512), jnp.float32)
    adv = jnp.asarray(rng.normal(size=512), jnp.float32)
    for kind in ("lpo_ppo_init", "ta_lpo_ppo_init"):
        params = drifts.init_params(kind, jax.random.key(1), hidden=32)
        params = {"w1": params["w1"], "w2": jnp.zeros_like(params["w2"])}  # random body, zero head

        def lpo(lr):
            r = jnp.exp(lr)
            return -jnp.mean(r * adv - drifts.drift(kind, params, r, adv, 0.2, 0.3))

        def ref(lr):
            r = jnp.exp(lr)
            return -jnp.mean(r * adv - ppo.ppo_drift(r, adv, 0.2))

        assert float(lpo(log_ratio)) == float(ref(log_ratio))
        np.testing.assert_array_equal(np.asarray(jax.grad(lpo)(log_ratio)), np.asarray(jax.grad(ref)(log_ratio)))

    # The published sign bug (- ReLU(ppo drift)) is far from PPO: this test would catch it.
    r = jnp.exp(log_ratio)
    bug = jax.nn.relu(0.0 - ppo.ppo_drift(r, adv, 0.2) - drifts.DELTA)
    assert float(jnp.abs(bug - ppo.ppo_drift(r, adv, 0.2)).max()) > 0.1


def test_drift_params_are_validated_before_compiling(cartpole):
    env, _ = cartpole

    def build(**fields):
        return drifts.make_agent(env, ppo.PPOConfig(**fields))

    with pytest.raises(ValueError, match="no biases"):
        build(drift="lpo", drift_params={"w1": jnp.zeros((8, 4)), "b1": jnp.zeros(4), "w2": jnp.zeros((4, 1))})
    with pytest.raises(ValueError, match="init_params"):
        build(drift="lpo")
    with pytest.raises(ValueError, match=r"w1 \[..., 16, H\]"):
        build(drift="ta_lpo", drift_params=drifts.init_params("lpo"))
    with pytest.raises(ValueError, match="must be None"):
        build(drift_params={"alpha": 1.0})
    with pytest.raises(ValueError, match="accepted values"):
        build(drift="clip")
    build(drift="dpo")  # DPO's defaults need no parameters
    # Core PPO knows no learned drift: it asks for the function instead of importing it.
    with pytest.raises(ValueError, match=r"PPOConfig.drift = 'lpo' needs its drift function: .*drifts.make_agent"):
        ppo.make_agent(env, ppo.PPOConfig(drift="lpo", drift_params=drifts.init_params("lpo")))
    with pytest.raises(ValueError, match=r"PPOConfig.drift_params must be None"):
        ppo.make_agent(env, ppo.PPOConfig(drift_params={"alpha": 1.0}))


@pytest.fixture(scope="module")
def lpo_tiny(cartpole):
    env, env_params = cartpole
    params = drifts.init_params("lpo_ppo_init", jax.random.key(0), hidden=8)
    cfg = ppo.PPOConfig(**TINY_PPO, drift="lpo_ppo_init", drift_params=params)
    agent = drifts.make_agent(env, cfg)
    return agent, cfg, env_params, jax.jit(make_train(agent, cfg))  # one compile for the file


def test_lpo_ppo_init_zero_head_trains_like_ppo(lpo_tiny, tiny_ppo):
    agent, cfg, env_params, train = lpo_tiny
    zero_head = cfg.replace(drift_params={**cfg.drift_params, "w2": jnp.zeros_like(cfg.drift_params["w2"])})
    key = jax.random.key(5)
    s_lpo, m_lpo = train(key, zero_head, env_params)
    p_agent, p_cfg, _ = tiny_ppo
    s_ppo, m_ppo = jax.jit(make_train(p_agent, p_cfg))(key, p_cfg, env_params)
    # The whole run is PPO's. These are two different compiled programs (the LPO one has the
    # drift network's ops), and whether XLA rounds them identically depends on the CPU's vector
    # code: bitwise on AVX-512, within 1.3e-8 on an AVX2 machine. So the run is compared to float32
    # rounding; the per-step loss and gradient are checked bit for bit above
    # (test_lpo_ppo_init_with_zero_head_is_ppo_loss_and_gradient_exactly), which is the test that
    # catches the known sign bug (- ReLU(ppo_drift): no clipping at all).
    close = lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)  # noqa: E731
    for k in m_ppo:
        close(m_lpo[k], m_ppo[k])
    jax.tree.map(close, s_lpo.params, s_ppo.params)


# -- the ES meta-trainer ----------------------------------------------------------------------
@config
class ToyConfig:
    """A stand-in agent config: `theta` is what ES optimises."""

    theta: Any = traced(None, "the parameters being meta-learned")
    noise: float = traced(0.01, "fitness noise scale")


TARGET = {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([[0.3]])}


def toy_train(key, cfg, env_params):
    """A 'training run' whose final return is -|θ - target|² plus seed noise."""
    d = sum(jnp.sum((cfg.theta[k] - TARGET[k]) ** 2) for k in TARGET)
    ret = -d + cfg.noise * jax.random.normal(key)
    return None, {"episode_return": jnp.stack([ret - 1.0, ret])}


TOY_INIT = {"a": jnp.zeros(3), "b": jnp.zeros((1, 1))}


def toy_trainer(out_dir=None, **es_kwargs):
    es = ESConfig(**{**dict(population_size=8, generations=6, lr=0.05, lr_decay=1.0, sigma=0.1, eval_seeds=2, devices=1), **es_kwargs})
    task = MetaTask("toy", toy_train, ToyConfig(theta=TOY_INIT), None)
    return MetaTrainer([task], "theta", TOY_INIT, es, out_dir=out_dir, progress=False)


def test_es_converges_on_a_toy_quadratic():
    result = toy_trainer(generations=120, eval_every=60).run()
    dist = sum(float(jnp.sum((result.mean[k] - TARGET[k]) ** 2)) for k in TARGET)
    assert dist < 1e-2, result.mean  # from 5.34 at the start
    mf = result.history["mean_fitness"]
    assert mf[0] < -5 and result.final_mean_fitness.mean() > -0.05


def test_es_resume_repeats_the_uninterrupted_generations_bitwise(tmp_path):
    full = toy_trainer(str(tmp_path / "full"), generations=6, eval_every=2).run()
    toy_trainer(str(tmp_path / "cut"), generations=3, eval_every=2).run()  # "killed" after 3
    resumed = toy_trainer(str(tmp_path / "cut"), generations=6, eval_every=2).run(resume=True)
    for k in full.history:
        if k != "seconds":
            np.testing.assert_array_equal(full.history[k], resumed.history[k], err_msg=k)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), full.state, resumed.state)
    saved = load_params(str(tmp_path / "cut" / "mean.npz"))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), saved, full.mean)
    with pytest.raises(FileExistsError):
        toy_trainer(str(tmp_path / "cut")).run()
    with pytest.raises(ResumeMismatchError, match=r"different es\.sigma;"):
        toy_trainer(str(tmp_path / "cut"), generations=6, eval_every=2, sigma=0.2).run(resume=True)


@pytest.mark.parametrize("chunk", [0, 2])
def test_es_runs_every_generation_whatever_its_candidate_batch(tmp_path, chunk):
    """`ESConfig.chunk` (candidates run at once) is not the host loop's chunk (generations
    per step of the loop): a vmapped or chunked population still runs one generation at a
    time, and equals the one-by-one run."""
    one_by_one = toy_trainer(generations=3, eval_every=0, chunk=1).run()
    result = toy_trainer(str(tmp_path / "run"), generations=3, eval_every=0, chunk=chunk).run()
    assert list(result.history["generation"]) == [0, 1, 2]
    np.testing.assert_allclose(result.history["fitness_mean"], one_by_one.history["fitness_mean"], rtol=1e-6)


def test_es_fitness_is_normalised_per_task_by_its_reference():
    def task(name, offset, reference):
        train = lambda k, c, e: (None, {"episode_return": jnp.stack([c.theta["a"][0] + offset])})  # noqa: E731
        return MetaTask(name, train, ToyConfig(theta=TOY_INIT), None, reference)

    es = ESConfig(population_size=4, generations=2, devices=1, eval_every=0)
    trainer = MetaTrainer([task("x", 6.0, 2.0), task("y", 8.0, 4.0)], "theta", TOY_INIT, es, progress=False)
    thetas = {"a": jnp.arange(12.0).reshape(4, 3), "b": jnp.zeros((4, 1, 1))}
    scores = trainer.evaluate(trainer.inner_keys(jax.random.key(0)), thetas)  # [P, T]
    a0 = np.arange(0.0, 12.0, 3.0)
    np.testing.assert_allclose(scores, np.stack([(a0 + 6) / 2, (a0 + 8) / 4], 1))
    history = trainer.run().history
    assert {"fitness_x", "fitness_y"} <= set(history)


def test_es_bad_input_fails_before_anything_runs():
    with pytest.raises(ValueError, match="must be even"):
        ESConfig(population_size=7)
    with pytest.raises(ValueError, match="must be even"):
        ESConfig(population_size=7, antithetic=False)
    with pytest.raises(ValueError, match="is static"):
        MetaTrainer([MetaTask("cp", None, ppo.PPOConfig(), None)], "num_envs", jnp.zeros(()))
    with pytest.raises(ValueError, match="no biases"):
        lpo = ppo.PPOConfig(drift="lpo", drift_params=drifts.init_params("lpo", hidden=4))
        biased = {**lpo.drift_params, "b1": jnp.zeros(4)}
        MetaTrainer([MetaTask("cp", None, lpo, None)], "drift_params", biased)
    with pytest.raises(ValueError, match="not divisible"):
        toy_trainer(population_size=6, devices=4)


def nan_train(key, cfg, env_params):
    """Like toy_train, but a run 'diverges' (NaN loss) when θ_a[0] > 1.05."""
    state, metrics = toy_train(key, cfg, env_params)
    loss = jnp.where(cfg.theta["a"][0] > 1.05, jnp.nan, 0.0) * jnp.ones(2)
    return state, {**metrics, "policy_loss": loss}


def test_es_nan_fitness_ranks_last_or_stops_without_touching_the_state(tmp_path):
    start = {"a": jnp.array([1.05, 0.0, 0.0]), "b": jnp.zeros((1, 1))}  # half the candidates diverge
    task = MetaTask("toy", nan_train, ToyConfig(theta=start), None)
    es = ESConfig(population_size=8, generations=2, sigma=0.1, eval_every=0, devices=1)
    result = MetaTrainer([task], "theta", start, es, progress=False).run()
    assert result.history["nan_count"].min() >= 1 and np.isfinite(np.asarray(result.state.mean)).all()
    out = str(tmp_path / "nan")
    logged = MetaTrainer([task], "theta", start, es, out_dir=out, progress=False).run()
    assert logged.history["nan_count"].min() >= 1 and np.isfinite(logged.history["fitness_mean"]).all()
    # Every candidate diverges: a clear error, and the checkpoint keeps generation 2's state.
    def diverged(key, cfg, env_params):
        state, metrics = nan_train(key, cfg, env_params)
        return state, {**metrics, "policy_loss": jnp.full(2, jnp.nan)}

    trainer = MetaTrainer([task._replace(train=diverged)], "theta", start, es.replace(generations=3), out_dir=out, progress=False)
    with pytest.raises(FloatingPointError, match="generation 2.*checkpoint at generation 2 is intact"):
        trainer.run(resume=True)
    from rlx.checkpoint import Checkpointer

    ckpt = Checkpointer(out + "/checkpoints")
    restored, meta = ckpt.restore(trainer.init_state())
    ckpt.close()
    assert meta["updates"] == 2  # the host loop counts steps (here generations) as "updates"
    np.testing.assert_array_equal(np.asarray(restored.mean), np.asarray(logged.state.mean))
    with pytest.raises(FloatingPointError, match="not finite"):
        MetaTrainer([task], "theta", start, es.replace(nan_policy="raise"), progress=False).run()


# -- ES over PPO drifts: sharding, chunking, solo equality -----------------------------------------
@pytest.fixture(scope="module")
def lpo_population(lpo_tiny):
    agent, cfg, env_params, train = lpo_tiny
    # The final return of 6 tiny updates barely depends on the drift; the summed policy loss does.
    task = MetaTask("cartpole", train, cfg, env_params, 2.0, lambda s, m: m["policy_loss"].sum())
    es = ESConfig(population_size=8, sigma=1.0, eval_every=0)
    trainer = MetaTrainer([task], "drift_params", cfg.drift_params, es, progress=False)
    thetas, _ = trainer.strategy.ask(jax.random.key(0), trainer.init_state(), trainer.strategy.default_params)
    keys = trainer.inner_keys(jax.random.key(1))
    return task, es, thetas, keys


def _trainer(task, es, **kw):
    return MetaTrainer([task], "drift_params", task.cfg.drift_params, es.replace(**kw), progress=False)


def test_es_member_fitness_on_8_devices_equals_solo_runs(lpo_population):
    """Every member of a population sharded over 8 devices scores exactly what `train`
    gives on its own (so also what 1 device gives) for the same key."""
    task, es, thetas, keys = lpo_population
    on8 = _trainer(task, es, devices=8, chunk=1).evaluate(keys, thetas)
    assert on8.shape == (8, 1) and len(np.unique(on8)) == 8
    for i in range(8):  # task.train is the jitted solo train
        cfg = task.cfg.replace(drift_params=jax.tree.map(lambda x: x[i], thetas))
        assert on8[i, 0] == task.score(*task.train(keys[i, 0], cfg, task.env_params)) / np.float32(2.0)


def test_es_chunked_map_equals_vmap(lpo_population):
    """The memory knob changes nothing but rounding: a vmap over all 8 drifts in PPO's
    config equals a lax.map over 2 chunks of 4. (XLA may reduce differently for batch 8 and
    batch 4, so the last bits can differ; a mix-up of candidates would be off by > 1e-5.)"""
    task, es, thetas, keys = lpo_population
    vmapped = _trainer(task, es, devices=1, chunk=0).evaluate(keys, thetas)
    chunked = _trainer(task, es, devices=1, chunk=4).evaluate(keys, thetas)
    np.testing.assert_allclose(chunked, vmapped, rtol=0, atol=1e-6)
    gaps = np.diff(np.sort(vmapped[:, 0]))
    assert gaps.min() > 1e-5  # different drifts give clearly different runs
