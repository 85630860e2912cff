"""`rlx reproduce`: every experiment under experiments/ is discovered, follows the
convention, and runs at smoke scale; listing, errors and the gallery."""

import json
import os
import re
import time

import pytest

from rlx import cli
from rlx import experiments as ex

EXPERIMENTS = ex.discover()


def test_discovery_finds_the_experiments_in_the_repository():
    on_disk = set()
    for dirpath, _, files in os.walk(os.path.join(ex.repo_root(), "experiments")):
        on_disk.update(os.path.join(dirpath, f) for f in files if f == "run.py")
    found = {os.path.join(ex.repo_root(), e.path) for e in EXPERIMENTS}
    assert on_disk <= found, f"run.py files not discovered: {sorted(on_disk - found)}"
    assert len(EXPERIMENTS) >= 3


# Smoke runs that cost the default suite more than ~20 s on 2 cores run with -m slow; the
# default suite keeps one real experiment (ddp-objective-gap) besides the fake one below.
SLOW_SMOKE = {"ta-horizon", "lpo-es", "es-speed", "groove", "ddp-target-return", "morl-fronts", "ddp-cvar",
              "lpg-lifetimes", "morl-hpo", "morl-hpo-envelope", "dpo-minatar", "lpg-es-vs-metagrad"}  # fmt: skip


@pytest.mark.parametrize(
    "exp",
    [pytest.param(e, marks=pytest.mark.slow) if e.name in SLOW_SMOKE else e for e in EXPERIMENTS],
    ids=[e.name for e in EXPERIMENTS],
)
def test_every_experiment_runs_at_smoke_scale(exp, tmp_path):
    assert exp.error is None, f"{exp.path}: {exp.error}"
    record = ex.run_experiment(exp, "smoke", str(tmp_path))
    for suffix in ("png", "csv", "json"):
        path = tmp_path / f"{exp.name}.{suffix}"
        assert path.exists() and path.stat().st_size > 0, f"{exp.name} did not write {path.name}"
    assert isinstance(record["result"], dict) and record["result"], "run() must return a dict of headline numbers"
    if "headline" in exp.meta:
        assert exp.meta["headline"] in record["result"], "META['headline'] must name an entry of run()'s result"
    assert json.loads((tmp_path / f"{exp.name}.json").read_text())["scale"] == "smoke"


def test_list_shows_every_experiment_with_paper_figure_expected_and_budgets(capsys):
    assert cli.main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for e in EXPERIMENTS:
        assert e.name in out and e.meta["paper"] in out and e.meta["figure"] in out
    for scale in ex.SCALE_NAMES:
        assert f"  {scale} " in out


FAKE = '''
"""A fake experiment for the discovery test."""
import os
from rlx.experiments import main

META = dict(name="fake-exp", paper="Nobody 2025", figure="Fig. 1", claim="x is 2", expected="x = 2",
            paper_value=2.0, headline="x", budget={"cpu": "1 s"})
SCALES = {"smoke": dict(n=1), "cpu": dict(n=2), "paper": dict(n=3)}

def run(scale="smoke", out_dir=None):
    n = SCALES[scale]["n"]
    for suffix in ("png", "csv"):
        open(os.path.join(out_dir, f"fake-exp.{suffix}"), "w").write("x")
    return {"x": 1.5 + n / 4, "flag": True}

if __name__ == "__main__":
    main(run, SCALES, __doc__)
'''


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    """A repository with one good, one broken and one helper module under experiments/."""
    d = tmp_path / "experiments" / "nobody" / "fig1"
    d.mkdir(parents=True)
    (d / "run.py").write_text(FAKE)
    (d / "helpers.py").write_text("X = 1\n")  # not an experiment: no META/SCALES/run
    bad = tmp_path / "experiments" / "nobody" / "broken"
    bad.mkdir()
    (bad / "run.py").write_text("import no_such_module\nMETA = {}\nSCALES = {}\ndef run(s, o): pass\n")
    monkeypatch.setenv("RLX_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_new_experiment_is_discovered_run_and_put_in_the_gallery(fake_root, capsys):
    found = ex.discover()
    assert [e.name for e in found] == ["fake-exp", "nobody/broken"]
    assert found[1].error.startswith("import failed: ModuleNotFoundError")
    assert cli.main(["reproduce", "fake-exp", "--scale", "cpu"]) == 0
    record = json.loads((fake_root / "results" / "fake-exp" / "fake-exp.json").read_text())
    assert record["result"]["x"] == 2.0 and record["scale"] == "cpu" and record["versions"]["jax"]
    out = capsys.readouterr().out
    assert cli.main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert "1 s (n=2)" in out and "BROKEN" in out and "2.0 (x); x = 2" in out
    assert cli.main(["reproduce", "--gallery", "docs/gallery.md"]) == 0
    md = (fake_root / "docs" / "gallery.md").read_text()
    assert "| [fake-exp](../experiments/nobody/fig1) | Nobody 2025: Fig. 1 | 2 | 2 | +0 (+0.0%) | — | cpu, " in md
    assert "![fake-exp](gallery/fake-exp.png)" in md  # a published copy: results/ is not tracked
    assert (fake_root / "docs" / "gallery" / "fake-exp.png").exists()
    assert "broken" not in md.split("## Gallery")[1].split("**")[0]  # broken modules stay out of the table


def test_gap_is_ours_minus_the_papers_number():
    exp = ex.Experiment("e", "experiments/e/run.py", {"paper_value": 200.0, "headline": "ret"}, {}, None)
    assert ex.ours_and_gap(exp, {"result": {"ret": 150.0}}) == ("150", "-50 (-25.0%)")
    assert ex.ours_and_gap(exp, None) == ("not run yet", "")
    exp.meta = {"headline": "ok"}
    assert ex.ours_and_gap(exp, {"result": {"ok": True}}) == ("yes", "")


def test_gallery_shows_the_headlines_interval_and_the_verdict():
    exp = ex.Experiment("e", "experiments/e/run.py", {"headline": "diff"}, {}, None)
    record = {"result": {"diff": 0.25, "interval": [0.1, 0.4], "verdict": "reproduced"}}
    assert ex.ours_and_gap(exp, record) == ("0.25 [0.1, 0.4]", "")
    assert ex.verdict_of(record) == "reproduced"
    assert ex.verdict_of({"result": {"diff": 0.25}}) == ex.verdict_of(None) == "—"


@pytest.mark.parametrize(
    "args, message",
    [
        (["reproduce", "ddp-cvr"], r"unknown experiment 'ddp-cvr'\. Did you mean ddp-cvar"),
        (["reproduce", "ddp-cvar", "--scale", "huge"], r"--scale 'huge' is invalid for ddp-cvar: accepted values are smoke, cpu, paper"),
        (["reproduce"], r"name an experiment"),
    ],
)
def test_reproduce_bad_input(args, message, capsys):
    start = time.perf_counter()
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and re.search(message, err), err
    assert time.perf_counter() - start < 5.0


def test_experiment_script_entry_point_writes_the_record(fake_root):
    import subprocess
    import sys

    script = fake_root / "experiments" / "nobody" / "fig1" / "run.py"
    out = subprocess.run([sys.executable, str(script), "--scale", "smoke"], cwd=fake_root, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "JAX_PLATFORMS": "cpu"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["x"] == 1.75
    assert json.loads((fake_root / "results" / "fake-exp" / "fake-exp.json").read_text())["scale"] == "smoke"


def test_reproduce_without_a_source_tree_says_where_experiments_live(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RLX_ROOT", str(tmp_path))  # as from an installed wheel: no experiments/
    assert cli.main(["reproduce", "--list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "they live in rlx's source tree" in err and str(tmp_path) in err, err
