"""Brute-force oracles on tiny finite-horizon MDPs (numpy, float64; test-only).

Nothing here uses the stock or the Markov property. The history tree of depth H has
a decision node for every history (s_0, a_0, r_1, s_1, ..., s_t) and a leaf for every
complete history, carrying its discounted return G = sum_t gamma^t r_{t+1}.

- `optimal_values`: `max over all history-dependent deterministic policies` of
  `E f(c_0 + G)`. Because the objective is linear in the law of G, that maximum is
  the expectimax over the tree (choose at each node the action whose subtree is
  best); `best_by_enumeration` checks this by literally listing every policy.
- `optimal_cvar`: `max_pi CVaR_tau(G)` via Rockafellar–Uryasev. For each policy the
  outer max over c_0 is reached at some `-g` with g a return the tree can produce, so
  trying every such c_0 with `optimal_values` is exact.
- `stock_dvi_value`: the objective actually achieved by stock-augmented DVI with
  *exact* stocks (no grid): at every node the greedy rule `argmax_a E f(c_t + Z)` with
  `c_t + Z = gamma^{-t}(c_0 + G)`. Equal to the optimum exactly when f is
  scale-consistent or gamma = 1 (experiment (c)).
"""

from __future__ import annotations

import itertools

import numpy as np

from rlx.envs.tabular.mdp import outcomes


class Tree:
    """The history tree, level by level.

    states[t], returns[t]: `[N_t]` state and partial discounted return of each node at
    depth t; probs[t]: `[N_t, A, N]` outcome probabilities of its children, which are
    the nodes `N_{t+1}` of depth t+1 in row-major `(node, a, outcome)` order.
    """

    def __init__(self, mdp, horizon: int, gamma: float, start: int | None = None):
        succ, probs, rewards = (np.array(x, np.float64) for x in outcomes(mdp))
        succ = succ.astype(np.int64)
        terminal = np.asarray(mdp.terminal, bool)
        S, A, N = succ.shape
        # From a terminal state the episode is over: one outcome, stay, reward 0.
        probs[terminal] = np.eye(N)[0]
        rewards[terminal] = 0.0
        succ[terminal] = np.arange(S)[terminal, None, None]
        self.A, self.N, self.horizon, self.gamma = A, N, horizon, gamma
        if start is None:
            initial = np.asarray(mdp.initial, np.float64)
            roots = np.flatnonzero(initial > 0)
            self.root_probs = initial[roots]
        else:
            roots, self.root_probs = np.array([start]), np.ones(1)
        self.states, self.returns, self.probs = [roots], [np.zeros(len(roots))], []
        for t in range(horizon):
            s = self.states[-1]
            self.probs.append(probs[s])  # [N_t, A, N]
            self.states.append(succ[s].reshape(-1))
            self.returns.append((self.returns[-1][:, None, None] + gamma**t * rewards[s]).reshape(-1))

    @property
    def leaf_returns(self) -> np.ndarray:
        return self.returns[-1]

    def expectimax(self, leaf_values: np.ndarray, decide_on: int | None = None) -> np.ndarray:
        """Back up `leaf_values: [N_H, ...]` (any trailing axes, maximised jointly per
        trailing index) to the root; returns `[...]`. With `decide_on=None` each
        trailing index gets its own argmax; see `stock_dvi_value` for the other use."""
        v = leaf_values
        for t in reversed(range(self.horizon)):
            p = self.probs[t]
            q = np.einsum("nao,nao...->na...", p, v.reshape(p.shape + v.shape[1:]))
            v = q.max(axis=1)
        return np.einsum("n,n...->...", self.root_probs, v)


def optimal_values(mdp, utility, c0s, gamma: float, horizon: int, start: int | None = None) -> np.ndarray:
    """`max_pi E f(c0 + G)` over history-dependent deterministic policies, for each
    `c0` in `c0s: [C]`; returns `[C]`. `utility` is a numpy-elementwise f."""
    tree = Tree(mdp, horizon, gamma, start)
    c0s = np.asarray(c0s, np.float64)
    return tree.expectimax(utility(c0s[None, :] + tree.leaf_returns[:, None]))


def optimal_cvar(mdp, tau: float, gamma: float, horizon: int, start: int | None = None) -> float:
    """`max_pi CVaR_tau(G)` over history-dependent deterministic policies."""
    tree = Tree(mdp, horizon, gamma, start)
    c0s = -np.unique(tree.leaf_returns)
    v = tree.expectimax(np.minimum(c0s[None, :] + tree.leaf_returns[:, None], 0.0))
    return float(np.max(-c0s + v / tau))


def stock_dvi_value(mdp, utility, c0: float, gamma: float, horizon: int, start: int | None = None) -> float:
    """`E f(c0 + G)` achieved by exact-stock DVI's greedy policy (no stock grid).

    At depth t DVI picks `argmax_a E f(c_t + Z_a)`, and along every history
    `c_t + Z = gamma^{-t} (c0 + G)`, so each node needs the continuation's expectation
    of `f(gamma^{-t'} (c0 + G))` for every depth t' above it: a value per scale.
    """
    tree = Tree(mdp, horizon, gamma, start)
    scales = gamma ** -np.arange(horizon, dtype=np.float64)  # [H]
    v = utility(scales[None, :] * (c0 + tree.leaf_returns[:, None]))  # [N_H, H]
    for t in reversed(range(horizon)):
        p = tree.probs[t]
        q = np.einsum("nao,naoh->nah", p, v.reshape(p.shape + (horizon,)))
        # Ties are broken towards the first action, like jnp.argmax in DVI.
        a = np.argmax(q[:, :, t], axis=1)
        v = q[np.arange(q.shape[0]), a]
    return float(tree.root_probs @ v[:, 0])


def law_of_policy(tree: Tree, actions: dict) -> tuple[np.ndarray, np.ndarray]:
    """Exact law `(returns [N_H], probs [N_H])` of G when decision node `(t, i)` takes
    `actions[(t, i)]`."""
    reach = tree.root_probs.copy()
    for t in range(tree.horizon):
        p = tree.probs[t]  # [N_t, A, N]
        chosen = np.zeros_like(p)
        for i in range(p.shape[0]):
            chosen[i, actions[(t, i)]] = p[i, actions[(t, i)]]
        reach = (reach[:, None, None] * chosen).reshape(-1)
    return tree.leaf_returns, reach


def best_by_enumeration(mdp, functional, gamma: float, horizon: int, start: int | None = None,
                        max_policies: int = 200_000) -> float:
    """Literal brute force: list every deterministic history-dependent policy (one
    action per decision node), compute its exact law of G and `functional(returns,
    probs)`, and return the best value. Only for tiny trees."""
    tree = Tree(mdp, horizon, gamma, start)
    nodes = [(t, i) for t in range(horizon) for i in range(len(tree.states[t]))]
    if tree.A ** len(nodes) > max_policies:
        raise ValueError(f"best_by_enumeration: {tree.A}^{len(nodes)} policies exceed max_policies={max_policies}.")
    best = -np.inf
    for choice in itertools.product(range(tree.A), repeat=len(nodes)):
        g, p = law_of_policy(tree, dict(zip(nodes, choice)))
        best = max(best, functional(g, p))
    return float(best)


def cvar_numpy(returns: np.ndarray, probs: np.ndarray, tau: float) -> float:
    """Exact lower-tail CVaR of a discrete law (sorted-atom formula), float64; `returns`,
    `probs`: `[N]`."""
    order = np.argsort(returns, kind="stable")
    x, p = returns[order], probs[order]
    cdf = np.cumsum(p)
    below = np.clip(np.minimum(cdf, tau) - (cdf - p), 0.0, None)
    return float(np.sum(below * x) / tau)


def numpy_utility(objective):
    """f of an (unbatched) `Objective` as a float64 numpy function, written apart from
    the JAX one in objectives.py so the oracle does not share its code."""
    fam = int(objective.family)
    k, a, b = (float(x) for x in np.asarray(objective.params, np.float64))
    table = {
        0: lambda x: x,
        1: lambda x: np.minimum(x, 0.0),
        2: lambda x: -np.abs(x),
        3: lambda x: -np.square(x),
        4: lambda x: (x >= 0).astype(np.float64),
        5: lambda x: a * np.minimum(x - k, 0.0) + b * np.maximum(x - k, 0.0),
        6: lambda x: -np.exp(-k * x) / k,
    }
    return lambda x: table[fam](np.asarray(x, np.float64))
