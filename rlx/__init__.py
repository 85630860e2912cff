"""rlx: pure-functional reinforcement learning in JAX."""
