"""benchmarks/bench_purejaxrl.py: skips in one line without a PureJaxRL checkout (fast,
nothing compiled); with one (`PUREJAXRL_DIR`) and a tiny budget it gives rows for both."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "bench_purejaxrl.py")


def bench(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PUREJAXRL_DIR": "", **(env or {})})  # fmt: skip


def not_purejaxrl(tmp_path):
    (tmp_path / "purejaxrl").mkdir()
    (tmp_path / "purejaxrl" / "ppo.py").write_text("print('not it')\n")
    return str(tmp_path)


@pytest.mark.parametrize(
    "where, reason",
    [
        (lambda tmp: [], "no PureJaxRL checkout given"),
        (lambda tmp: ["--purejaxrl", str(tmp / "absent")], "does not exist"),
        (lambda tmp: ["--purejaxrl", str(tmp)], "is not a PureJaxRL checkout"),
        (lambda tmp: ["--purejaxrl", not_purejaxrl(tmp)], "is not a PureJaxRL checkout"),
    ],
    ids=["unset", "absent", "empty-dir", "other-ppo"],
)
def test_skips_in_one_line(tmp_path, where, reason):
    out_json = tmp_path / "out.json"
    proc = bench(*where(tmp_path), "--json", str(out_json))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skipped: ") and reason in lines[0], proc.stdout
    assert not out_json.exists()


def test_env_var_is_the_default(tmp_path):
    proc = bench(env={"PUREJAXRL_DIR": str(tmp_path / "absent")})
    assert proc.stdout.strip() == f"skipped: PureJaxRL checkout {tmp_path / 'absent'} does not exist"


@pytest.mark.slow
def test_rows_for_both_systems(tmp_path):
    checkout = os.environ.get("PUREJAXRL_DIR")
    if not checkout:
        pytest.skip("PUREJAXRL_DIR is not set (a PureJaxRL checkout)")
    out_json = tmp_path / "out.json"
    proc = bench("--purejaxrl", checkout, "--steps", "1024", "--repeats", "1", "--settings", "1x1,2x2",
                 "--json", str(out_json), timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out_json.read_text())["rows"]
    assert [(r["system"], r["seeds"], r["devices"]) for r in rows] == [
        ("rlx", 1, 1), ("PureJaxRL", 1, 1), ("rlx", 2, 2), ("rlx (map)", 2, 2), ("rlx train (CLI)", 2, 2),
        ("PureJaxRL", 2, 2)]  # fmt: skip
    for r in rows:
        assert r["ok"] == 1, r.get("errors")
        assert r["sps"]["median"] > 0 and r["process_s"]["median"] > r["compile_s"]["median"] > 0
        assert r["final_return"]["median"] > 0
        assert r["devices_used"] == [r["devices"]]
    table = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ")]
    assert len(table) == 1 + len(rows)
