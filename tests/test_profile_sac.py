"""benchmarks/profile_sac.py counts a program's dot FLOPs from its optimised HLO: checked
here against FLOPs counted by hand for plain and batched products."""

import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from profile_sac import dot_flops, kernel_flops, parse_hlo  # noqa: E402


def test_dot_flops_match_hand_count():
    def f(x, w1, w2, xb, wb):
        h = jax.nn.relu(x @ w1)  # [32, 16] @ [16, 8]: 2·32·8·16
        g = h.T @ x  # contraction over the batch, [8, 32] @ [32, 16]: 2·8·16·32
        b = jnp.einsum("kni,kij->knj", xb, wb)  # batched [2, 32, 16] @ [2, 16, 8]: 2·2·32·8·16
        return h @ w2, g, b  # [32, 8] @ [8, 4]: 2·32·4·8

    args = (jnp.ones((32, 16)), jnp.ones((16, 8)), jnp.ones((8, 4)), jnp.ones((2, 32, 16)), jnp.ones((2, 16, 8)))
    instrs, comps = parse_hlo(jax.jit(f).lower(*args).compile().as_text())
    expected = 2 * 32 * 8 * 16 + 2 * 8 * 16 * 32 + 2 * 2 * 32 * 8 * 16 + 2 * 32 * 4 * 8
    assert sum(dot_flops(instrs, n) for n, i in instrs.items() if i[1] == "dot") == expected
    # Counted kernel by kernel (a fusion through the dots it holds), the total is the same.
    kernels = [n for n, i in instrs.items() if i[0] in comps and not i[0].startswith("fused")]
    top = {n for n in kernels if instrs[n][1] in ("dot", "fusion")}
    assert sum(kernel_flops(instrs, comps, n)[0] for n in top) == expected
