"""rlx.replay: the pure-functional ring buffer, against a plain Python ring."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import os

from rlx import replay


def example():
    return {"x": jnp.zeros((2,), jnp.float32), "i": jnp.zeros((), jnp.int32), "done": jnp.zeros((), bool)}


def items(start, n):
    """n distinct items, numbered from `start`, leaves [n, ...]."""
    i = np.arange(start, start + n, dtype=np.int32)
    return {"x": np.stack([i, -i], 1).astype(np.float32), "i": i, "done": i % 3 == 0}


class PyRing:
    """The reference: a Python list used as a ring."""

    def __init__(self, capacity):
        self.capacity, self.slots, self.pos, self.size = capacity, [None] * capacity, 0, 0

    def add(self, batch):
        for k in range(len(batch["i"])):
            self.slots[self.pos] = {name: v[k] for name, v in batch.items()}
            self.pos = (self.pos + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)


def assert_matches(buf, ring):
    assert int(buf.position) == ring.pos and int(buf.size) == ring.size
    for slot, item in enumerate(ring.slots):
        if item is None:
            continue
        for name, v in item.items():
            np.testing.assert_array_equal(np.asarray(buf.data[name][slot]), v)


def test_add_wraps_around_like_a_ring():
    buf, ring = replay.init(example(), 5), PyRing(5)
    add = jax.jit(replay.add)
    start = 0
    for n in (3, 4, 1, 5, 2):  # crosses the end several times, once with a full-capacity write
        batch = items(start, n)
        buf, _ = add(buf, batch), ring.add(batch)
        assert_matches(buf, ring)
        start += n
    assert buf.capacity == 5


def test_add_inside_scan_matches_ring():
    def body(buf, t):
        batch = {"x": jnp.stack([t, -t])[None].astype(jnp.float32), "i": t[None], "done": (t % 3 == 0)[None]}
        return replay.add(buf, batch), None

    buf, _ = jax.jit(lambda b: jax.lax.scan(body, b, jnp.arange(11, dtype=jnp.int32)))(replay.init(example(), 4))
    ring = PyRing(4)
    ring.add(items(0, 11))
    assert_matches(buf, ring)


def test_sample_draws_only_written_items_uniformly():
    buf = replay.add(replay.init(example(), 16), items(0, 3))
    mb = jax.jit(replay.sample, static_argnums=2)(buf, jax.random.key(0), 3000)
    i = np.asarray(mb["i"])
    assert set(np.unique(i)) == {0, 1, 2}
    counts = np.bincount(i, minlength=3)
    assert np.all(np.abs(counts - 1000) < 150), counts  # 5 sigma of a binomial(3000, 1/3)
    # Items come out whole: every field of a drawn row belongs to the same transition.
    np.testing.assert_array_equal(np.asarray(mb["x"])[:, 0], i)
    np.testing.assert_array_equal(np.asarray(mb["done"]), i % 3 == 0)


def test_can_sample():
    buf = replay.init(example(), 8)
    assert not bool(replay.can_sample(buf, 1))
    buf = replay.add(buf, items(0, 5))
    assert bool(replay.can_sample(buf, 5)) and not bool(replay.can_sample(buf, 6))
    buf = replay.add(buf, items(5, 8))
    assert int(buf.size) == 8 and bool(replay.can_sample(buf, 8))


def test_vmapped_buffers_equal_solo_buffers():
    """A population of buffers (vmap over members, different data and keys) equals each
    member run alone."""
    members, capacity = 3, 6
    batches = [items(10 * m, 4) for m in range(members)]
    stacked = jax.tree.map(lambda *x: np.stack(x), *batches)
    keys = jax.random.split(jax.random.key(1), members)

    def run(batch_a, batch_b, key):
        buf = replay.add(replay.add(replay.init(example(), capacity), batch_a), batch_b)
        return buf, replay.sample(buf, key, 7)

    second = jax.tree.map(lambda x: x[:, ::-1].copy(), stacked)
    pop_buf, pop_mb = jax.jit(jax.vmap(run))(stacked, second, keys)
    for m in range(members):
        solo_buf, solo_mb = jax.jit(run)(batches[m], jax.tree.map(lambda x: x[m], second), keys[m])
        for a, b in zip(jax.tree.leaves((pop_buf, pop_mb)), jax.tree.leaves((solo_buf, solo_mb))):
            np.testing.assert_array_equal(np.asarray(a)[m], np.asarray(b))
    assert pop_buf.position.shape == (members,)


def test_nbytes_is_the_allocated_memory():
    buf = replay.init(example(), 1000)
    allocated = sum(x.nbytes for x in jax.tree.leaves(buf.data))
    assert replay.transition_bytes(example()) == 4 * 2 + 4 + 1
    assert replay.nbytes(example(), 1000) == allocated == 13_000
    # Shape-only examples work too (what agents use before anything is allocated).
    spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), example())
    assert replay.nbytes(spec, 1000) == allocated
    assert replay.format_bytes(13_000) == "12.7 KiB"


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="capacity"):
        replay.init(example(), 0)
    with pytest.raises(ValueError, match="does not fit"):
        replay.add(replay.init(example(), 2), items(0, 3))


def _buffer_copies(capacity: int) -> list[str]:
    """HLO lines of a compiled two-update SAC loop that copy an array with `capacity` rows."""
    from rlx import envs
    from rlx.agents import sac

    env, params = envs.make("gymnax/Pendulum-v1")
    cfg = sac.SACConfig(buffer_size=capacity, learning_starts=256, total_steps=1_000, hidden=(8, 8), critic_hidden=(8, 8))
    agent = sac.make_agent(env, cfg)
    state = jax.eval_shape(lambda k: agent.init(k, cfg, params), jax.random.key(0))

    def run(state):
        return jax.lax.scan(lambda s, _: (agent.update(s, cfg, params)[0], None), state, None, 2)[0]

    # The state is donated, as the chunked driver does, so XLA needs no copy of the
    # initial buffer either.
    text = jax.jit(run, donate_argnums=0).lower(state).compile().as_text()
    return [line for line in text.splitlines() if " copy(" in line and f"[{capacity}" in line]


def test_an_update_writes_and_samples_the_buffer_in_place():
    """The buffer is written and then sampled in one loop body. Without the XLA flag that
    `import rlx` sets, XLA fuses the write into the sampling gather and then copies the
    whole buffer every update (3 of its 6 arrays, twice); with it, nothing is copied."""
    import os

    assert "xla_cpu_copy_insertion_use_region_analysis=true" in os.environ.get("XLA_FLAGS", "")
    copies = _buffer_copies(99_991)
    assert copies == [], copies[:3]


def test_the_xla_flag_can_be_turned_off():
    import subprocess
    import sys

    code = "import os, rlx; print(os.environ.get('XLA_FLAGS', ''))"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "XLA_FLAGS": ""})
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "XLA_FLAGS": "", "RLX_XLA_CPU_FLAGS": "0"})  # fmt: skip
    assert "region_analysis=true" in on.stdout and "region_analysis" not in off.stdout
