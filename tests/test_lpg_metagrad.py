"""Meta-gradient LPG: its inner update is lpg's, its meta-gradient is the derivative of the
meta-objective (central differences, float64), the same seed gives bitwise the same rule,
a resumed run equals an uninterrupted one, and (slow) a rule trained by meta-gradients
beats the untrained rule on held-out levels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.agents.meta import lpg
from rlx.agents.meta import lpg_metagrad as lm
from rlx.envs import meta_grid as mg

ENV = mg.MetaGrid(max_size=3, max_objects=1)
DIST = mg.GridDistribution(min_size=2, max_size=3, max_objects=1, walls=1, episode_length=(4, 12), lifetime=(3, 8))
RULE = dict(meta_hidden=4, phi_hidden=4, y_bins=4)
TINY = dict(num_envs=2, num_steps=4, max_lifetime=8, **RULE)


def _rule(key=1, temporal=False):
    """A random rule with a non-zero π̂ head, so that the agent really moves."""
    params = lpg.init_params(jax.random.key(key), temporal, hidden=4, y_bins=4, phi_hidden=4, scale=2.0)
    params["pi_w"] = jax.random.normal(jax.random.key(key + 7), params["pi_w"].shape)
    return params


def test_inner_update_is_lpgs_update():
    """With η = cfg.lpg_params, one differentiable inner update gives lpg.update's agent."""
    cfg = lpg.LPGConfig(**TINY, temporal=True, lpg_params=_rule(temporal=True))
    level = jax.tree.map(lambda x: x[0], mg.sample_levels(jax.random.key(3), DIST, 1))
    state = lpg.init_agent(jax.random.key(0), ENV, cfg, level)
    N = jnp.int32(7)

    @jax.jit
    def both(state):
        ref = lpg.update(state, ENV, cfg, level, N)[0]
        ours = lm.inner_update(cfg.lpg_params, state, ENV, cfg, level, N)[0]
        return ref, ours

    for _ in range(3):  # a few updates, so the agent's inputs to the rule are no longer uniform
        ref, ours = both(state)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6),
                     ref.params, ours.params)  # fmt: skip
        np.testing.assert_array_equal(np.asarray(ref.obs), np.asarray(ours.obs))
        assert int(ours.num_updates) == int(ref.num_updates)
        state = ref
    assert float(jnp.abs(state.params["pi"][0][0]).max()) > 1e-3  # the policy moved


def test_meta_gradient_equals_central_differences_in_float64():
    """d/dε L(η + ε v) at ε = 0, for random directions v (all of η; φ only; the π̂ head only),
    from jax.grad through K = 3 unrolled updates of 2 agents, against a central difference
    with ε = 1e-5. Tolerance: relative 1e-5 (float64 central differences are exact to
    about ε² ≈ 1e-10 relative here). The rule's θ-dependent inputs are differentiated
    (input_gradients = True), so this is the exact derivative."""
    with jax.enable_x64(True):  # jax.experimental.enable_x64 in older jax
        eta = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), _rule(2, temporal=True))
        cfg = lpg.LPGConfig(**TINY, temporal=True, lpg_params=eta)
        mcfg = lm.MetaGradConfig(num_agents=2, unroll=3)
        # Integer level fields as int64, the width MetaGrid's step computes cells in under x64.
        levels = jax.tree.map(lambda x: x.astype(jnp.int64) if x.dtype == jnp.int32 else x,
                              mg.sample_levels(jax.random.key(5), DIST, 2))  # fmt: skip
        agents, critics = jax.vmap(lm.new_agent, (0, None, None, 0))(jax.random.split(jax.random.key(6), 2), ENV, cfg,
                                                                       levels)  # fmt: skip
        assert agents.params["pi"][0][0].dtype == jnp.float64
        objective = lm.make_meta_objective(ENV, mcfg)
        loss = jax.jit(lambda e: objective(e, agents, critics, levels, cfg)[0])
        grad = jax.jit(jax.grad(loss))(eta)
        assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grad))
        def direction(names, seed):
            keys = jax.random.split(jax.random.key(seed), len(eta))
            v = {k: jax.random.normal(keys[i], x.shape, jnp.float64) if k in names else jnp.zeros_like(x)
                 for i, (k, x) in enumerate(eta.items())}  # fmt: skip
            norm = jnp.sqrt(sum(jnp.sum(x**2) for x in v.values()))
            return {k: x / norm for k, x in v.items()}

        eps = 1e-5
        for seed, names in enumerate((set(eta), {"phi_w1", "phi_b1", "phi_w2", "phi_b2"}, {"pi_w", "pi_b"})):
            v = direction(names, 11 + seed)
            analytic = float(sum(jnp.sum(grad[k] * v[k]) for k in eta))
            plus = loss(jax.tree.map(lambda e, d: e + eps * d, eta, v))
            minus = loss(jax.tree.map(lambda e, d: e - eps * d, eta, v))
            numeric = float((plus - minus) / (2 * eps))
            assert abs(analytic) > 1e-6, names  # a real, non-zero derivative along v
            np.testing.assert_allclose(analytic, numeric, rtol=1e-5, err_msg=str(sorted(names)))


@pytest.fixture(scope="module")
def trained():
    """Two trainers with the same settings and seed (one compiled program serves both)."""
    init = _rule(3)
    cfg = lpg.LPGConfig(**TINY, lpg_params=init)
    mcfg = lm.MetaGradConfig(num_agents=2, unroll=2, meta_steps=6, chunk=3, lr=1e-2)
    runs = [lm.MetaGradTrainer(ENV, cfg, DIST, init, mcfg, progress=False).run() for _ in range(2)]
    return init, cfg, mcfg, runs


def test_same_seed_gives_bitwise_the_same_rule(trained):
    init, cfg, mcfg, (a, b) = trained
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a.params, b.params)
    for name in a.history:
        np.testing.assert_array_equal(a.history[name], b.history[name], err_msg=name)
    # The rule did change, every metric is finite, and agents were replaced at lifetime ends.
    assert max(float(jnp.abs(a.params[k] - init[k]).max()) for k in init) > 1e-3
    for name, v in a.history.items():
        if name != "held_out":
            assert np.isfinite(v).all(), name
    assert a.history["resets"].sum() >= 1 and int(a.state.agents_started) == 2 + a.history["resets"].sum()
    # Another seed gives another rule.
    c = lm.MetaGradTrainer(ENV, cfg, DIST, init, mcfg.replace(seed=1), progress=False).run()
    assert max(float(jnp.abs(a.params[k] - c.params[k]).max()) for k in init) > 0


def test_resumed_run_equals_an_uninterrupted_one(trained, tmp_path):
    init, cfg, mcfg, (whole, _) = trained
    out = str(tmp_path / "run")
    lm.MetaGradTrainer(ENV, cfg, DIST, init, mcfg.replace(meta_steps=3), out_dir=out, progress=False).run()
    resumed = lm.MetaGradTrainer(ENV, cfg, DIST, init, mcfg, out_dir=out, progress=False).run(resume=True)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), whole.params, resumed.params)
    np.testing.assert_array_equal(whole.history["meta_loss"], resumed.history["meta_loss"])
    saved = lm.load_rule(out + "/lpg_params.npz")
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), whole.params, saved)


def test_registered_as_a_trainer():
    from rlx import registry

    entry = registry.get("lpg-metagrad")
    assert entry.kind == "trainer" and entry.load()[2] is lm.main
    args = lm.parser().parse_args(["--meta-steps", "3", "--agents", "2"])
    assert (args.meta_steps, args.agents, args.unroll) == (3, 2, 5)


# -- learning check ------------------------------------------------------------------------------------------
LEARN_ENV = mg.MetaGrid(max_size=4, max_objects=2)
LEARN_DIST = mg.GridDistribution(min_size=3, max_size=4, max_objects=2, walls=2, episode_length=(10, 30),
                                 lifetime=(10, 40))  # fmt: skip


@pytest.mark.slow
def test_meta_gradient_rule_beats_the_untrained_rule_on_held_out_levels():
    """Three meta-training seeds (0, 1, 2, fixed in advance), each 300 meta-steps of 8 agents
    from the untrained rule (π̂ head zero: the policy stays uniform). Fresh agents trained by
    each rule on 48 held-out levels (keys never used in meta-training), scored by return /
    optimum at each level's lifetime. The paired difference (trained − untrained) per level,
    averaged over seeds, has a 95% bootstrap interval above 0, and every seed's mean
    difference is positive."""
    init = lpg.init_params(jax.random.key(0), False, 16)
    cfg = lpg.LPGConfig(num_envs=4, num_steps=10, meta_hidden=16, max_lifetime=40, lpg_params=init)
    held = mg.sample_levels(jax.random.key(10**6), LEARN_DIST, 48)
    evaluate = lpg.make_evaluate(LEARN_ENV, cfg)
    key = jax.random.key(2024)
    untrained = evaluate(key, cfg, held)
    diffs = []
    for seed in (0, 1, 2):
        mcfg = lm.MetaGradConfig(num_agents=8, meta_steps=300, chunk=50, lr=1e-3, seed=seed)
        rule = lm.MetaGradTrainer(LEARN_ENV, cfg, LEARN_DIST, init, mcfg, progress=False).run().params
        diffs.append(evaluate(key, cfg.replace(lpg_params=rule), held) - untrained)
    diffs = np.asarray(diffs)  # [seeds, levels]
    per_level = diffs.mean(0)
    rng = np.random.default_rng(0)
    boot = per_level[rng.integers(0, per_level.size, (10_000, per_level.size))].mean(1)
    low, high = np.quantile(boot, [0.025, 0.975])
    print(f"trained - untrained: {per_level.mean():.3f} [{low:.3f}, {high:.3f}]; per seed {diffs.mean(1).round(3)}")
    assert low > 0, (per_level.mean(), low, high)
    assert (diffs.mean(1) > 0).all(), diffs.mean(1)
