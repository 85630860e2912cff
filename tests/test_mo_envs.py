"""Multi-objective envs: known fronts, reachability, conformance, wrappers, parity."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.agents.morl import indicators as ind
from rlx.pareto import pareto_filter, simplex_lattice
from rlx.envs import registry
from rlx.envs.mo import ENVS
from rlx.envs.mo.deep_sea_treasure import DeepSeaTreasure
from rlx.envs.mo.fruit_tree import FruitTree
from rlx.envs.mo.resource_gathering import ROUTES, ResourceGathering, route_return
from rlx.envs.mo.wrappers import (
    ChebyshevScalarization,
    LinearScalarization,
    NormalizeVectorReward,
    VectorEpisodeStatistics,
)

# The DST table (convex: Yang et al. 2019; concave: Vamplew et al.): steps to reach each treasure, and its value.
DST_STEPS = [1, 3, 5, 7, 8, 9, 13, 14, 17, 19]
DST_TABLE = {
    "convex": [0.7, 8.2, 11.5, 14.0, 15.1, 16.1, 19.6, 20.3, 22.4, 23.7],
    "concave": [1, 2, 3, 5, 8, 16, 24, 50, 74, 124],
}


def _table_front(version, gamma):
    return np.array(
        [(t * gamma ** (s - 1), -sum(gamma**i for i in range(s))) for t, s in zip(DST_TABLE[version], DST_STEPS)]
    )


def _discounted(rewards, gamma):
    rewards = np.asarray(rewards, np.float64)
    return ((gamma ** np.arange(len(rewards)))[:, None] * rewards).sum(0)


# ---------------------------------------------------------------------------
# Deep Sea Treasure
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["convex", "concave"])
@pytest.mark.parametrize("gamma", [0.99, 1.0])
def test_dst_front_equals_table(version, gamma):
    env = DeepSeaTreasure(version)
    assert env.pareto_front_exact
    np.testing.assert_allclose(env.pareto_front(gamma), _table_front(version, gamma), rtol=1e-12)


def test_dst_front_drops_dominated_treasures_at_small_gamma():
    # At gamma = 0.9 a far treasure can be worth less, discounted, than a nearer one:
    # 14.0 * 0.9^6 < 11.5 * 0.9^4. Those points are not on the discounted front.
    front = DeepSeaTreasure("convex").pareto_front(0.9)
    table = _table_front("convex", 0.9)
    np.testing.assert_allclose(front, pareto_filter(table), rtol=1e-12)
    assert len(front) == 3


@pytest.mark.parametrize("version", ["convex", "concave"])
def test_dst_front_reachable_by_search_on_env(version):
    """Breadth-first search over the env's own step function finds every treasure at
    the tabulated distance, replaying the shortest paths through `step` gives the
    front, and no reachable outcome beats it."""
    env, params = ENVS[f"rlx/deep-sea-treasure{'' if version == 'convex' else '-concave'}"]()
    gamma = env.mo_spec.gamma
    _, start = env.reset(jax.random.key(0), params)
    step_all = jax.jit(
        jax.vmap(lambda s, a: env.step_env(jax.random.key(0), s, a, params), in_axes=(None, 0))
    )
    actions = jnp.arange(4)
    paths = {tuple(np.asarray(start.pos)): ()}
    outcomes = {}  # treasure value -> shortest action path
    queue = collections.deque([start])
    while queue:
        state = queue.popleft()
        path = paths[tuple(np.asarray(state.pos))]
        _, nxt, reward, term, _ = step_all(state, actions)
        for a in range(4):
            pos = tuple(np.asarray(nxt.pos[a]))
            if bool(term[a]):
                outcomes.setdefault(float(reward[a, 0]), path + (a,))
            elif pos not in paths:
                paths[pos] = path + (a,)
                queue.append(jax.tree.map(lambda x: x[a], nxt))
    assert sorted(outcomes) == pytest.approx(sorted(DST_TABLE[version]))
    assert [len(outcomes[t]) for t in sorted(outcomes)] == DST_STEPS

    step = jax.jit(env.step)
    front = env.pareto_front(gamma)
    replayed = []
    for value in sorted(outcomes):
        obs, state = env.reset(jax.random.key(1), params)
        rewards = []
        for i, a in enumerate(outcomes[value]):
            obs, state, r, term, trunc, _ = step(jax.random.key(i), state, a, params)
            rewards.append(np.asarray(r))
            assert bool(term) == (i == len(outcomes[value]) - 1)
        replayed.append(_discounted(rewards, gamma))
    np.testing.assert_allclose(np.array(replayed), front, rtol=1e-5)
    # The best return of each treasure is at its shortest path; the cap's outcome
    # (100 steps, no treasure) is dominated. So the front is the filter of these.
    timeout = np.array([[0.0, -sum(gamma**i for i in range(100))]])
    np.testing.assert_allclose(pareto_filter(np.vstack([replayed, timeout])), front, rtol=1e-5)


def test_dst_linear_scalarisation_supports_all_convex_but_only_concave_extremes():
    w = simplex_lattice(2, divisions=10000)
    for version, expected in [("convex", set(range(10))), ("concave", {0, 9})]:
        front = DeepSeaTreasure(version).pareto_front(0.99)
        best = set(np.argmax(w @ front.T, axis=1).tolist())
        assert best == expected
    # Undiscounted, the convex points (19.6,-13), (20.3,-14), (22.4,-17) are collinear
    # (slope 0.7 per step), so 20.3 is only weakly supported: it ties, never wins alone.
    f = DeepSeaTreasure("convex").pareto_front(1.0)
    assert np.cross(f[7] - f[6], f[8] - f[6]) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------
# Fruit Tree
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [5, 6, 7])
def test_fruit_tree_front_every_leaf_reachable_and_optimal(depth):
    env, params = ENVS["rlx/fruit-tree"](depth=depth)
    gamma = env.mo_spec.gamma
    front = env.pareto_front(gamma)
    assert front.shape == (2**depth, 6) and env.pareto_front_exact
    assert ind.cardinality(front) == 2**depth  # every fruit is Pareto-optimal

    # Walk to every leaf: leaf k is reached by the bits of k, most significant first.
    leaves = jnp.arange(2**depth)
    bits = (leaves[:, None] >> jnp.arange(depth - 1, -1, -1)[None, :]) & 1

    def episode(path):
        _, state = env.reset(jax.random.key(0), params)

        def body(state, a):
            _, state, r, term, trunc, _ = env.step(jax.random.key(0), state, a, params)
            return state, (r, term, trunc)

        return jax.lax.scan(body, state, path)[1]

    rewards, term, trunc = jax.jit(jax.vmap(episode))(bits)
    assert bool(jnp.all(term[:, -1])) and not bool(jnp.any(term[:, :-1])) and not bool(jnp.any(trunc))
    discounted = np.einsum("t,btd->bd", gamma ** np.arange(depth), np.asarray(rewards, np.float64))
    np.testing.assert_allclose(discounted, front, rtol=1e-6)


def test_fruit_tree_every_leaf_linearly_supported():
    from scipy.optimize import linprog

    front = FruitTree(6).pareto_front(1.0)
    n, d = front.shape
    for i in range(n):
        # max t  s.t.  w.(p_i - p_j) >= t for all j != i,  w on the simplex.
        others = np.delete(front, i, axis=0)
        a_ub = np.hstack([-(front[i] - others), np.ones((n - 1, 1))])
        res = linprog(
            c=np.r_[np.zeros(d), -1.0],
            A_ub=a_ub,
            b_ub=np.zeros(n - 1),
            A_eq=np.r_[np.ones(d), 0.0][None, :],
            b_eq=[1.0],
            bounds=[(0, None)] * d + [(None, None)],
        )
        assert res.status == 0 and -res.fun > 1e-6, f"leaf {i} is not linearly supported"


# ---------------------------------------------------------------------------
# Resource Gathering
# ---------------------------------------------------------------------------


def _route_returns(env, params, routes, n, seed):
    """Discounted returns `[R, n, 3]` of open-loop `routes: [R, T]` (padded; the
    episode's first end masks the rest), `n` rollouts each; also `ended: [R, n, T]`."""
    gamma = env.mo_spec.gamma

    def episode(route, key):
        _, state = env.reset(key, params)

        def body(carry, xs):
            state, alive, disc = carry
            a, k = xs
            _, state, r, term, trunc, _ = env.step(k, state, a, params)
            done = term | trunc
            return (state, alive & ~done, disc * gamma), (disc * r * alive, done & alive)

        keys = jax.random.split(key, route.shape[0])
        init = (state, jnp.asarray(True), jnp.asarray(1.0))
        _, (rewards, ended) = jax.lax.scan(body, init, (route, keys))
        return rewards.sum(0), ended

    keys = jax.random.split(jax.random.key(seed), (routes.shape[0], n))
    return jax.jit(jax.vmap(jax.vmap(episode, in_axes=(None, 0))))(routes, keys)


def test_resource_gathering_routes_match_env():
    env, params = ENVS["rlx/resource-gathering"]()
    gamma = env.mo_spec.gamma
    names = list(ROUTES)
    length = max(len(r) for r in ROUTES.values())
    routes = jnp.asarray([list(r) + [0] * (length - len(r)) for r in ROUTES.values()])
    n = 10000
    # Without the enemies' luck each route is deterministic and ends home on its last step.
    safe_returns, ended = _route_returns(env, params.replace(kill_prob=0.0), routes, n, 0)
    risky_returns, _ = _route_returns(env, params, routes, n, 1)
    for i, name in enumerate(names):
        steps = len(ROUTES[name])
        assert bool(jnp.all(ended[i, :, steps - 1])) and not bool(jnp.any(ended[i, :, : steps - 1])), name
        np.testing.assert_allclose(
            safe_returns[i, 0], route_return(ROUTES[name], gamma, 0.0), rtol=1e-5, err_msg=name
        )
        # With kill_prob 0.1 the Monte Carlo mean matches the exact expectation.
        returns = np.asarray(risky_returns[i], np.float64)
        stderr = returns.std(0) / np.sqrt(n)
        expected = route_return(ROUTES[name], gamma, 0.1)
        assert np.all(np.abs(returns.mean(0) - expected) <= 5 * stderr + 1e-6), name


def test_resource_gathering_front_is_marked_approximate():
    env = ResourceGathering()
    assert not env.pareto_front_exact
    front = env.pareto_front(0.99)
    assert ind.cardinality(front) == len(front)
    all_routes = np.stack([route_return(r, 0.99, 0.1) for r in ROUTES.values()])
    # every route is matched or dominated by the front
    assert np.all(np.any(np.all(front[None] >= all_routes[:, None], -1), 1))


# ---------------------------------------------------------------------------
# Conformance over the registry
# ---------------------------------------------------------------------------

# An action that never ends an episode (DST: up at the start; RG: left along the
# bottom row; Fruit Tree always ends at depth, so its cap is set below depth).
IDLE = {
    "rlx/deep-sea-treasure": (0, {}),
    "rlx/deep-sea-treasure-concave": (0, {}),
    "rlx/fruit-tree": (0, {"max_steps_in_episode": 3}),
    "rlx/resource-gathering": (2, {}),
    "rlx/minecart": (5, {}),  # doing nothing at the base never departs
}
# Evaluation gamma pinned per env: 0.99, Minecart 0.98 (Felten et al. 2023).
EVAL_GAMMA = {"rlx/minecart": 0.98}


def test_registry_lists_mo_envs():
    assert set(IDLE) == set(ENVS)
    for name in ENVS:
        env, params = registry.make(name)
        assert env.reward_dim == len(env.reward_low) == len(env.reward_high)


@pytest.mark.parametrize("name", sorted(IDLE))
def test_env_conformance(name):
    env, params = registry.make(name)
    d = env.reward_dim
    spec = env.mo_spec
    assert spec.ref_point.shape == (d,) and spec.weights.shape[1] == d and spec.gamma == EVAL_GAMMA.get(name, 0.99)
    front = env.pareto_front(spec.gamma)
    above = np.all(front > spec.ref_point, axis=1)  # the reference point counts every front point
    if name == "rlx/minecart":  # except the route that never mines: on the ore axes of (0, 0, -200)
        assert np.all(front >= spec.ref_point) and np.sum(~above) == 1
    else:
        assert front.shape[1] == d and np.all(above)

    batch = 16
    keys = jax.random.split(jax.random.key(0), batch)
    reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
    obs, state = reset(keys, params)
    obs0, _ = env.reset(jax.random.key(1), params)
    assert obs.shape == (batch, *obs0.shape)
    n_actions = env.action_space(params).n

    def rollout(key, state):
        def body(state, k):
            k_act, k_step = jax.random.split(k)
            a = jax.random.randint(k_act, (), 0, n_actions)
            obs, state, r, term, trunc, info = env.step(k_step, state, a, params)
            return state, (obs, r, term, trunc, info["final_obs"], state.time)

        return jax.lax.scan(body, state, jax.random.split(key, 150))[1]

    obs, r, term, trunc, final_obs, time = jax.jit(jax.vmap(rollout))(keys, state)
    assert r.shape == (batch, 150, d) and r.dtype == jnp.float32
    assert term.dtype == jnp.bool_ and trunc.dtype == jnp.bool_
    assert not bool(jnp.any(term & trunc))
    assert np.all(np.asarray(r) >= env.reward_low - 1e-6) and np.all(np.asarray(r) <= env.reward_high + 1e-6)
    space = env.observation_space(params)
    assert bool(jax.vmap(jax.vmap(space.contains))(obs).all())
    done = np.asarray(term | trunc)
    assert done.any(), "random play should finish some episodes"
    # Auto-reset: after a finished episode the next observation is the start, time is 0.
    np.testing.assert_array_equal(np.asarray(obs)[done], np.broadcast_to(np.asarray(obs0), obs[done].shape))
    assert np.all(np.asarray(time)[done] == 0)
    assert np.all(np.asarray(time)[~done] > 0)
    # Truncation at the cap with a never-ending policy.
    idle, overrides = IDLE[name]
    capped = params.replace(**overrides)
    cap = int(capped.max_steps_in_episode)
    _, state = env.reset(jax.random.key(2), capped)

    def idle_body(state, k):
        _, state, r, term, trunc, _ = env.step(k, state, idle, capped)
        return state, (term, trunc)

    _, (term, trunc) = jax.jit(lambda s: jax.lax.scan(idle_body, s, jax.random.split(jax.random.key(3), 2 * cap)))(state)
    expected = np.zeros(2 * cap, bool)
    expected[[cap - 1, 2 * cap - 1]] = True
    np.testing.assert_array_equal(np.asarray(trunc), expected)
    assert not bool(jnp.any(term))


# ---------------------------------------------------------------------------
# Wrappers
# ---------------------------------------------------------------------------


def test_scalarisation_wrappers():
    env, params = registry.make("rlx/deep-sea-treasure")
    path = (3, 1, 3, 1, 1)  # right, down, right, down, down: treasure 11.5 in 5 steps
    lin = LinearScalarization(env, [0.25, 0.75])
    cheb = ChebyshevScalarization(env, [0.5, 0.5], utopia=[24.0, 0.0])
    norm = NormalizeVectorReward(env, "bounds")
    for wrapped, expected in [
        (lin, lambda v: 0.25 * v[0] + 0.75 * v[1]),
        (cheb, lambda v: -max(0.5 * abs(24.0 - v[0]), 0.5 * abs(v[1]))),
    ]:
        wp = wrapped.default_params
        _, state = wrapped.reset(jax.random.key(0), wp)
        step = jax.jit(wrapped.step)
        for a in path:
            _, state, r, _, _, info = step(jax.random.key(0), state, a, wp)
            assert r.shape == ()
            assert float(r) == pytest.approx(expected(np.asarray(info["vector_reward"])), rel=1e-6)
    _, state = norm.reset(jax.random.key(0))
    for a in path:
        _, state, r, _, _, info = norm.step(jax.random.key(0), state, a)
    np.testing.assert_allclose(r, np.asarray(info["raw_vector_reward"]) / np.array([23.7, 1.0]), rtol=1e-6)
    # One program for a population of preferences: vmap over the weights in params.
    w = jnp.asarray(simplex_lattice(2, divisions=4), jnp.float32)
    wp = jax.vmap(lambda w: lin.default_params.replace(weights=w))(w)
    _, state = jax.vmap(lin.reset, in_axes=(None, 0))(jax.random.key(0), wp)
    _, _, r, _, _, info = jax.vmap(lin.step, in_axes=(None, 0, None, 0))(jax.random.key(0), state, 1, wp)
    np.testing.assert_allclose(r, np.asarray(w) @ np.array([0.7, -1.0]), rtol=1e-6)
    # Bad preferences are refused up front.
    with pytest.raises(ValueError, match="objectives"):
        LinearScalarization(env, [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="sum to 1"):
        LinearScalarization(env, [0.6, 0.6])
    with pytest.raises(ValueError, match="utopia"):
        ChebyshevScalarization(env, [0.5, 0.5], utopia=[1.0, 2.0, 3.0])


def test_vector_episode_statistics():
    env, params = registry.make("rlx/deep-sea-treasure")
    gamma = env.mo_spec.gamma
    stats = VectorEpisodeStatistics(LinearScalarization(env, [0.5, 0.5]), gamma=gamma)
    sp = stats.default_params
    step = jax.jit(stats.step)
    _, state = stats.reset(jax.random.key(0), sp)
    path = (3, 1, 3, 1, 1)  # treasure 11.5 in 5 steps
    for i, a in enumerate(path):
        _, state, _, _, _, info = step(jax.random.key(0), state, a, sp)
        assert bool(info["returned_episode"]) == (i == len(path) - 1)
    np.testing.assert_allclose(info["returned_episode_vector_return"], [11.5, -5.0], rtol=1e-6)
    np.testing.assert_allclose(info["returned_episode_discounted_vector_return"], env.pareto_front(gamma)[2], rtol=1e-5)
    assert int(info["returned_episode_length"]) == 5
    # A truncated episode (100 steps of bumping into the surface) is reported too.
    for i in range(100):
        _, state, _, _, trunc, info = step(jax.random.key(0), state, 0, sp)
    assert bool(trunc) and bool(info["returned_episode"])
    np.testing.assert_allclose(info["returned_episode_vector_return"], [0.0, -100.0])
    np.testing.assert_allclose(
        info["returned_episode_discounted_vector_return"], [0.0, -(1 - gamma**100) / (1 - gamma)], rtol=1e-5
    )
    with pytest.raises(ValueError, match="gamma"):
        VectorEpisodeStatistics(env, gamma=1.5)


# ---------------------------------------------------------------------------
# Trajectory parity with MO-Gymnasium (skipped when it is not installed)
# ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning")
@pytest.mark.parametrize(
    "ours,theirs,kwargs",
    [
        ("rlx/deep-sea-treasure", "deep-sea-treasure-v0", {}),
        ("rlx/deep-sea-treasure-concave", "deep-sea-treasure-concave-v0", {}),
        ("rlx/fruit-tree", "fruit-tree-v0", {"depth": 5}),
        ("rlx/fruit-tree", "fruit-tree-v0", {"depth": 6}),
        ("rlx/fruit-tree", "fruit-tree-v0", {"depth": 7}),
    ],
)
def test_trajectory_parity_with_mo_gymnasium(ours, theirs, kwargs):
    mo_gym = pytest.importorskip("mo_gymnasium")
    env, params = registry.make(ours, **kwargs)
    ref = mo_gym.make(theirs, **kwargs)
    steps = 600
    rng = np.random.default_rng(0)
    n_actions = env.action_space(params).n
    # Bias towards "down" and "right" so DST episodes reach deep treasures and the far column.
    probs = np.array([0.1, 0.4, 0.1, 0.4]) if n_actions == 4 else None
    actions = rng.choice(n_actions, size=steps, p=probs)

    def body(state, xs):
        k, a = xs
        _, state, r, term, trunc, info = env.step(k, state, a, params)
        return state, (info["final_obs"], r, term, trunc)

    _, state = env.reset(jax.random.key(0), params)
    keys = jax.random.split(jax.random.key(1), steps)
    final_obs, r, term, trunc = jax.jit(lambda s: jax.lax.scan(body, s, (keys, jnp.asarray(actions))))(state)[1]

    obs, _ = ref.reset(seed=0)
    obs_ours, _ = env.reset(jax.random.key(0), params)
    np.testing.assert_array_equal(np.asarray(obs_ours), obs)
    episodes = 0
    for t, a in enumerate(actions):
        obs, reward, terminated, truncated, _ = ref.step(int(a))
        np.testing.assert_array_equal(np.asarray(final_obs[t]), obs, err_msg=f"step {t}")
        np.testing.assert_allclose(np.asarray(r[t]), reward, rtol=1e-6, err_msg=f"step {t}")
        assert (bool(term[t]), bool(trunc[t])) == (terminated, truncated), f"step {t}"
        if terminated or truncated:
            episodes += 1
            ref.reset()
    assert episodes >= 3
