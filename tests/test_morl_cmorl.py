"""C-MORL: constraint levels, crowding selection, a whole (tiny) run's bookkeeping
(step count, archive, monotone hypervolume, policy assignment, orbax round trip),
bad input, and (slow) fronts on Deep Sea Treasure against the known ones."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from rlx import envs
from rlx.agents.morl import cmorl, moppo
from rlx.agents.morl import indicators as ind
from rlx.pareto import non_dominated_mask
from rlx.evaluation import evaluate

TINY = dict(num_envs=4, num_steps=16, num_minibatches=2, update_epochs=2, hidden=(32, 32), critic_hidden=(32, 32))


def test_constraint_levels_relax_by_beta_in_the_right_direction():
    j_r = np.array([10.0, -20.0, 0.0])
    c = cmorl.constraint_levels(j_r.copy(), 1, 0.9)
    assert c[1] == -np.inf
    np.testing.assert_allclose(c[[0, 2]], [9.0, 0.0])  # β J for positive returns
    c = cmorl.constraint_levels(j_r.copy(), 0, 0.9)
    np.testing.assert_allclose(c[1], -22.0)  # a relaxation for negative returns too (β J would be -18)


def test_select_by_crowding_prefers_boundaries_then_isolated_points_and_skips_earlier_picks():
    points = np.array([[0.0, 10.0], [1.0, 9.0], [5.0, 5.0], [9.0, 1.0], [10.0, 0.0], [9.5, 0.5]])
    ids = np.arange(6) + 100
    first = cmorl.select_by_crowding(points, ids, set(), 3)
    assert first[:2] == [100, 104] and first[2] == 102  # boundaries (+inf), then the widest gap
    second = cmorl.select_by_crowding(points, ids, set(first), 10)
    assert set(second) == {101, 103, 105}
    assert cmorl.select_by_crowding(points[:0], ids[:0], set(), 3) == []


def test_bad_input_raises():
    with pytest.raises(ValueError, match="beta"):
        cmorl.CMORLConfig(beta=0.0)
    with pytest.raises(ValueError, match="num_select"):
        cmorl.CMORLConfig(num_select=0)
    cartpole, params = envs.make("gymnax/CartPole-v1")
    with pytest.raises(ValueError, match="vector-reward"):
        cmorl.run(cartpole, params, moppo.MOPPOConfig(weights=(1.0,), **TINY), cmorl.CMORLConfig())


@pytest.fixture(scope="module")
def tiny_run():
    """Fruit Tree (depth 5, 6 objectives): every leaf is Pareto-optimal, so even barely
    trained policies give distinct front points to archive, select and extend."""
    env, params = envs.make("rlx/fruit-tree", depth=5)
    cfg = moppo.MOPPOConfig(weights=np.full(6, 1 / 6), normalize_obs=True, **TINY)
    ccfg = cmorl.CMORLConfig(init_divisions=1, init_updates=3, rounds=2, num_select=1, constrained_updates=3)
    rows = []
    result = cmorl.run(env, params, cfg, ccfg, seed=0, on_round=rows.append)
    assert result.points.shape[0] >= 2, result.all_points
    return env, params, cfg, ccfg, result, rows


def test_vmap_population_mode_runs_sharded_and_agrees_with_map(tiny_run):
    # Both stages sharded over 8 devices with "vmap" (members batched, not run one after
    # another): the same policies, so the same evaluations up to float reassociation.
    env, params, cfg, ccfg, result, _ = tiny_run
    vmapped = cmorl.run(env, params, cfg, ccfg.replace(population_mode="vmap"), seed=0)
    assert vmapped.env_steps == result.env_steps
    np.testing.assert_allclose(vmapped.all_points, result.all_points, rtol=1e-4, atol=1e-4)


def test_run_counts_every_env_step(tiny_run):
    env, _, cfg, ccfg, result, rows = tiny_run
    batch = cfg.num_envs * cfg.num_steps
    expected = 6 * ccfg.init_updates * batch  # 6 stage-1 preferences (divisions 1, 6-D)
    for row in rows[1:]:
        assert row["policies_trained"] == len(row["selected"]) * env.reward_dim
        expected += row["policies_trained"] * ccfg.constrained_updates * batch
    assert result.env_steps == rows[-1]["env_steps"] == expected
    assert result.eval_steps > 0 and result.history == rows
    assert result.env_steps <= 6 * ccfg.init_updates * batch + cmorl.stage2_env_steps(ccfg, cfg, env.reward_dim)


def test_archive_is_a_non_dominated_subset_of_the_evaluations_and_hv_never_decreases(tiny_run):
    env, _, _, _, result, rows = tiny_run
    spec = env.mo_spec
    assert np.all(non_dominated_mask(result.points))
    assert np.all(result.points > spec.ref_point)
    for p in result.points:  # every archived point is one of the evaluated policies
        assert np.min(np.abs(result.all_points - p).max(1)) < 1e-4
    # ... and the archive dominates or equals every evaluation above the reference point.
    above = result.all_points[np.all(result.all_points > spec.ref_point, 1)]
    for q in above:
        assert np.any(np.all(result.points >= q - 1e-4, 1))
    hv = [r["hypervolume"] for r in rows]
    assert all(b >= a - 1e-9 for a, b in zip(hv, hv[1:])), hv
    np.testing.assert_allclose(hv[-1], ind.hypervolume(result.points, spec.ref_point), rtol=1e-6)
    selected = [i for r in rows[1:] for i in r["selected"]]
    assert len(selected) == len(set(selected))  # no policy is selected twice


def test_assigned_policy_reproduces_its_archived_return(tiny_run):
    env, params, cfg, _, result, _ = tiny_run
    agent = moppo.make_agent(env, cfg)
    for w in np.concatenate([np.eye(6), np.full((1, 6), 1 / 6)]):
        pid, policy = cmorl.assign(result, w)
        row = int(np.flatnonzero(result.ids == pid)[0])
        assert row == int(np.argmax(result.points @ np.asarray(w)))
        out = evaluate(agent, policy, cfg, env, params, jax.random.key(0), 1, gamma=env.mo_spec.gamma)
        np.testing.assert_allclose(np.asarray(out["discounted_return"][0]), result.points[row], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        cmorl.assign(result, [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="sum to 1"):
        cmorl.assign(result, [0.7] * 6)


def test_archive_saves_and_restores_with_orbax(tiny_run, tmp_path):
    _, _, _, _, result, _ = tiny_run
    path = tmp_path / "archive"
    cmorl.save_archive(str(path), result)
    like = next(iter(result.policies.values()))
    points, undiscounted, ids, policies = cmorl.load_archive(str(path), like)
    np.testing.assert_array_equal(points, result.points)
    np.testing.assert_array_equal(undiscounted, result.undiscounted)
    np.testing.assert_array_equal(ids, result.ids)
    for i in ids:
        for a, b in zip(jax.tree.leaves(policies[int(i)]), jax.tree.leaves(result.policies[int(i)])):
            np.testing.assert_array_equal(a, b)


# -- learning on the known fronts (slow) ---------------------------------------------------
DST_LEARN = dict(
    num_envs=16, num_steps=64, num_minibatches=4, update_epochs=4, lr=1e-3, gamma=0.99, ent_coef=0.01,
    normalize_obs=True,
)  # fmt: skip


def _dst_run(version, beta, rounds, seed=0):
    env, params = envs.make("rlx/deep-sea-treasure" + ("-concave" if version == "concave" else ""))
    scale = (0.1, 1.0) if version == "convex" else (0.01, 1.0)
    cfg = moppo.MOPPOConfig(weights=(0.5, 0.5), reward_scale=scale, **DST_LEARN)
    ccfg = cmorl.CMORLConfig(init_divisions=5, init_updates=100, rounds=rounds, num_select=5, constrained_updates=10, beta=beta)
    return env, cmorl.run(env, params, cfg, ccfg, seed=seed)


def _matched(points, front, tol=0.05):
    dist = np.abs(points[:, None, :] - front[None, :, :]).max(-1)
    return sorted({int(j) for j in np.argwhere(dist < tol)[:, 1]})


@pytest.mark.slow
def test_convex_dst_hypervolume_close_to_the_true_front():
    env, result = _dst_run("convex", beta=0.9, rounds=3)
    spec = env.mo_spec
    true_hv = ind.hypervolume(env.pareto_front(spec.gamma), spec.ref_point)
    hv = [r["hypervolume"] for r in result.history]
    print("HV by stage", hv, "true", true_hv, "points", _matched(result.points, env.pareto_front(spec.gamma)))
    assert hv[-1] >= 0.9 * true_hv
    assert hv[-1] >= hv[0] and all(b >= a for a, b in zip(hv, hv[1:]))


@pytest.mark.slow
def test_concave_dst_finds_points_no_weighted_sum_can():
    env, result = _dst_run("concave", beta=0.5, rounds=4)
    front = env.pareto_front(env.mo_spec.gamma)
    found = _matched(result.points, front)
    print("concave DST points found:", found)
    assert len(found) >= 4, found
    assert len(set(found) - {0, 9}) >= 2  # the extremes are all a weighted sum finds
