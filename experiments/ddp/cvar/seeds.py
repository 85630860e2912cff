"""Seed sweep and policy diagnostic for DηN's CVaR_0.25 on `risky_grid(0.2)` (H = 10).

For each seed: train DηN with `run.py`'s settings, pick c_0 by the Rockafellar–Uryasev
search on the network's start-state values (`deep.select_c0`), then report
- the Monte-Carlo CVaR_0.25 of greedy episodes from that c_0;
- the exact CVaR_0.25 of the same greedy policy: the network's action is tabulated at
  every (time, state, lattice stock) and evaluated by `tabular.evaluate_policy` (the
  stocks an episode meets are integers, so this is the policy the agent plays);
- its disagreement with stock DVI: the fraction of the policy's own visits to
  (t, s, c) where its action is not optimal for `E min(c + G, 0)`, and the summed
  loss `sum_visits q*(best) - q*(taken)` (in units of that inner objective).

    python experiments/ddp/cvar/seeds.py --seeds 8 --episodes 40000

The seeds train as one `jit(vmap)` population (`experiments/ddp/common.train_and_evaluate`),
with the same keys as the slow test
`tests/test_ddp_deep.py::test_deep_cvar_is_near_the_dvi_optimum_and_beats_risk_neutral_dqn`.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

import jax
import jax.numpy as jnp
import numpy as np

from rlx import distributional as dist
from rlx.agents.ddp import deep
from rlx.agents.ddp import objectives as O
from rlx.agents.ddp import tabular as T
from rlx.envs.tabular import risky_grid, to_env
from rlx.envs.tabular.mdp import outcomes

HORIZON, TAU = 10, 0.25


def optimal_q(mdp, grid, horizon=HORIZON):
    """`q*[t, s, j, a]` of `E min(c_j + G, 0)` with `horizon - t` steps to go."""
    util = T.utilities(O.expected_shortfall(0.0), grid)

    def step(carry, _):
        eta, pi = carry
        eta = T.backup(mdp, T._select(eta, pi), grid, 1.0)
        q, pi = T.greedy(eta, util)
        return (eta, pi), q

    eta0 = T._initial_eta(mdp, grid)
    _, qs = jax.lax.scan(step, (eta0, T.greedy(eta0, util)[1]), None, length=horizon)
    return np.asarray(qs[::-1])


def occupancy(mdp, policy, stocks, c0, horizon=HORIZON):
    """P(time t, state s, stock c_j) under `policy: [H, S, J]` from c0 (gamma = 1,
    integer rewards): `[H, S, J]`, terminal states left out."""
    succ, probs, rew = (np.asarray(x) for x in outcomes(mdp))
    term = np.asarray(mdp.terminal)
    S, J = mdp.num_states, len(stocks)
    d = np.zeros((horizon, S, J))
    d[0, :, int(np.argmin(np.abs(stocks - c0)))] = np.asarray(mdp.initial)
    for t in range(horizon - 1):
        for s in np.nonzero(~term & (d[t].sum(-1) > 0))[0]:
            for j in np.nonzero(d[t, s])[0]:
                a = policy[t, s, j]
                for k in np.nonzero(probs[s, a] > 0)[0]:
                    jn = int(np.clip(np.rint(stocks[j] + rew[s, a, k] - stocks[0]), 0, J - 1))
                    d[t + 1, succ[s, a, k], jn] += d[t, s, j] * probs[s, a, k]
    d[:, term] = 0
    return d


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--key", type=int, default=0, help="population key (members' keys are split from it)")
    ap.add_argument("--episodes", type=int, default=40_000)
    ap.add_argument("--total-steps", type=int, default=None, help="default: run.py's cpu scale")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="DDPConfig overrides on top of run.py's, e.g. batch_size=256 (values parsed as Python literals)")
    args = ap.parse_args()
    from experiments.ddp import common
    from experiments.ddp.cvar import run

    mdp = risky_grid(run.SCALES["cpu"]["slip"])
    env, env_params = to_env(mdp, max_steps=HORIZON)
    grid = T.exact_grid(mdp, HORIZON)
    stocks = np.asarray(grid.stocks, np.float64)
    _, optimum, dvi_c0 = T.solve(mdp, O.cvar(TAU), grid, 1.0, horizon=HORIZON, exact=True)
    optimum = float(optimum)
    qstar = optimal_q(mdp, grid)
    loss_star = qstar.max(-1, keepdims=True) - qstar  # [H, S, J, A] >= 0
    scale = dict(run.SCALES["cpu"]["deep"])
    if args.total_steps:
        scale["total_steps"] = args.total_steps
    for item in args.set:
        field, value = item.split("=", 1)
        scale[field] = ast.literal_eval(value)
    cfg = run.deep_config(mdp, **scale)
    agent = deep.make_agent(env, cfg)
    value_fn = deep.make_value_fn(env, cfg)
    c0s = jnp.arange(cfg.stock_low, cfg.stock_high + 0.5, 1.0)
    weights = jnp.full((args.episodes,), 1.0 / args.episodes)
    law = jax.jit(lambda pol, c0: deep.exact_return_law(mdp, pol, grid, c0, HORIZON))

    def per_seed(state, c, ep, key):
        # As tests/test_ddp_deep.py's slow CVaR test: c_0 by the RU search, then greedy play.
        k_search, k_play = jax.random.split(key)
        c0, _ = deep.select_c0(value_fn, state.params, c, env, ep, k_search, TAU, c0s)
        returns = deep.evaluate(agent, state.params, c, env, ep, k_play, c0, args.episodes)["return"]
        policy = deep.greedy_table(value_fn, state.params, c, mdp.num_states, grid.stocks, HORIZON)
        return dist.cvar(returns, weights, TAU), c0, policy

    print(f"stock DVI optimum CVaR_{TAU} = {optimum:.4f} (c_0 = {float(dvi_c0):g}); {cfg.total_steps} env steps, "
          f"{args.episodes} Monte-Carlo episodes per seed; {args.seeds} seeds as one population", flush=True)
    (mc, c0, pols), metrics, seconds = common.train_and_evaluate(agent, [cfg], [env_params], args.seeds, per_seed,
                                                                 key=args.key)
    print(f"train + evaluate: {seconds:.0f} s for {args.seeds} seeds (compile included)")
    gaps, exact_gaps, hindsight_gaps = [], [], []
    for i in range(args.seeds):
        pol = np.asarray(pols[i])
        exact = float(dist.cvar(grid.atoms, law(jnp.asarray(pol), jnp.asarray(c0[i], grid.stocks.dtype)), TAU))
        occ = occupancy(mdp, pol, stocks, float(c0[i]))
        taken = np.take_along_axis(loss_star, pol[..., None], -1)[..., 0]
        gaps.append(abs(float(mc[i]) - optimum) / abs(optimum))
        exact_gaps.append(abs(exact - optimum) / abs(optimum))
        print(f"seed {i}: c_0 {float(c0[i]):g}, Monte-Carlo CVaR {float(mc[i]):.3f} (gap {gaps[-1]:.1%}), exact CVaR "
              f"of the same policy {exact:.3f} (gap {exact_gaps[-1]:.1%}), non-optimal on "
              f"{(occ * (taken > 1e-9)).sum() / occ.sum():.1%} of its visits, loss {(occ * taken).sum():.3f}, "
              f"clipped target mass {float(metrics['clipped'][i]):.4f}")
        # Which part of the gap is the RU search's c_0: the same policy from every candidate c_0.
        by_c0 = [float(dist.cvar(grid.atoms, law(jnp.asarray(pol), jnp.asarray(c, grid.stocks.dtype)), TAU))
                 for c in np.asarray(c0s)]
        best = int(np.argmax(by_c0))
        hindsight_gaps.append(abs(by_c0[best] - optimum) / abs(optimum))
        print(f"    the same policy from its best c_0 in hindsight ({float(c0s[best]):g}): exact CVaR "
              f"{by_c0[best]:.3f} (gap {hindsight_gaps[-1]:.1%})")
    for label, g in (("exact", exact_gaps), ("Monte-Carlo", gaps), ("exact, best c_0 in hindsight", hindsight_gaps)):
        print(f"within 10% ({label}): {sum(x <= 0.1 for x in g)} of {len(g)}; gaps " + ", ".join(f"{x:.1%}" for x in g))


if __name__ == "__main__":
    main()
