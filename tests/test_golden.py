"""Golden results: every case of tests/golden/cases.py, recomputed, equals its recorded
tests/golden/<name>.npz bit for bit (metrics and the final-state hash). Record again
with `scripts/record_golden.py` only when a change of numbers is intended."""

import os

import numpy as np
import pytest

from golden.cases import CASES, check_setup, outputs, records_dir

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
FAST = ("ppo_cartpole", "dqn_cartpole")  # a few seconds each; the rest are slow-marked


def load(name: str) -> dict[str, np.ndarray]:
    with np.load(os.path.join(records_dir(GOLDEN), f"{name}.npz")) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in CASES])
def test_case_is_bitwise_equal_to_its_golden_record(name):
    check_setup()
    want, got = load(name), outputs(name)
    metric_keys = sorted(k for k in want if k.startswith("metrics."))
    assert sorted(k for k in got if k.startswith("metrics.")) == metric_keys
    for k in metric_keys:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
        assert got[k].dtype == want[k].dtype and got[k].tobytes() == want[k].tobytes(), f"{k}: bits differ"
    if str(got["state_sha256"]) != str(want["state_sha256"]):
        old = dict(zip(want["state_leaf_paths"].tolist(), want["state_leaf_sha256"].tolist()))
        new = dict(zip(got["state_leaf_paths"].tolist(), got["state_leaf_sha256"].tolist()))
        moved = [p for p in new if p in old and new[p] != old[p]]
        pytest.fail(f"{name}: final state differs (recorded with jax {want['jax_version']}); leaves changed: {moved}, "
                    f"added: {sorted(set(new) - set(old))}, removed: {sorted(set(old) - set(new))}")  # fmt: skip


def test_every_case_has_a_record_and_every_record_a_case():
    recorded = {f[: -len(".npz")] for f in os.listdir(records_dir(GOLDEN)) if f.endswith(".npz")}
    assert recorded == set(CASES)
