"""rlx.load, `rlx eval` and `rlx record`: a run directory read back (rlx/runs.py).

One tiny CartPole PPO run by `rlx train` per module: the loaded run must equal what
training held in memory (state bitwise, policy, evaluation) and what it printed."""

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from rlx import cli, envs
from rlx import config as config_lib
from rlx.errors import RunError, RunFileError
from rlx.evaluation import evaluate
from rlx.logging import read_metrics
from rlx.testing import host_leaves
from rlx.train import EVAL_KEY_SEED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = "gymnax/CartPole-v1"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`rlx train` of 2 seeds on 2 devices, 2 updates with a checkpoint after each. The
    Runner's final state (and the agent, population and env) are taken from the CLI's own
    final step, so the loaded run is compared with what training held in memory."""
    out = str(tmp_path_factory.mktemp("runs") / "cartpole")
    argv = ["train", "ppo", "--env", ENV, "--seeds", "2", "--total-steps", "256", "--num-steps", "32",
            "--no-progress", "--out", out]  # fmt: skip
    seen, finish = {}, cli._finish

    def spy(args, agent, env, env_params, pop, result, *rest):
        seen.update(agent=agent, env=env, env_params=env_params, pop=pop, result=result)
        return finish(args, agent, env, env_params, pop, result, *rest)

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr(cli, "_finish", spy)
        assert cli.main(argv) == 0
    return dict(seen, out=out, printed=printed.getvalue())


@pytest.fixture(scope="module")
def runner_run(trained):
    """(dir, the Runner's result, agent, population, env, env_params)."""
    t = trained
    return t["out"], t["result"], t["agent"], t["pop"], t["env"], t["env_params"]


@pytest.fixture(scope="module")
def cli_run(trained):
    """(dir, what `rlx train` printed)."""
    return trained["out"], trained["printed"]


def _cli(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _equal_columns(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for name in a:
        if a[name].dtype.kind == "f":
            np.testing.assert_array_equal(a[name], b[name])  # NaN equals NaN here
        else:
            assert a[name].tolist() == b[name].tolist()


# -- what load gives back ---------------------------------------------------------------------
def test_metrics_config_and_members_are_the_runs(runner_run):
    out, result, agent, pop, _, _ = runner_run
    import rlx

    run = rlx.load(out)
    stored = read_metrics(os.path.join(out, "metrics.csv"))
    _equal_columns(run.metrics, stored)
    assert len(run.metrics["update_index"]) == 2 * 2
    for m in range(2):  # the values the Runner returned, read back exactly
        rows = run.metrics["member"] == m
        np.testing.assert_array_equal(run.metrics["update_index"][rows], np.arange(2))
        logged = run.metrics["episode_return"][rows].astype(np.float32)
        np.testing.assert_array_equal(logged, result.metrics["episode_return"][m])
    assert run.algorithm == "ppo" and run.env_name == ENV and run.kind == "agent"
    assert run.members == pop.members == [{"member": 0, "seed": 0}, {"member": 1, "seed": 1}]
    assert run.config == jax.tree.map(lambda x: x[0], pop.cfg)
    assert config_lib.to_dict(run.population_config) == config_lib.to_dict(pop.cfg)
    table = run.table()
    assert list(table.columns) == list(stored) and len(table) == 4
    np.testing.assert_array_equal(table["env_steps"].to_numpy(), stored["env_steps"])


def test_table_without_pandas_is_one_line(runner_run, monkeypatch):
    from rlx.runs import load

    run = load(runner_run[0])
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(RunError, match=r"needs pandas.*pip install pandas") as e:
        run.table()
    assert "\n" not in str(e.value)


def test_state_is_the_runners_final_state_bitwise(runner_run):
    out, result, _, _, _, _ = runner_run
    from rlx.runs import load

    run = load(out)
    assert run.updates == 2
    loaded, final = host_leaves(run.state()), host_leaves(result.state)
    assert len(loaded) == len(final) > 5
    for a, b in zip(loaded, final):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    for a, b in zip(host_leaves(run.state(member=1)), host_leaves(jax.tree.map(lambda x: x[1], result.state))):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(RunError, match=r"member 2 is invalid.*members 0\.\.1"):
        run.state(member=2)


def test_policy_acts_as_the_agent(runner_run):
    out, result, agent, pop, env, env_params = runner_run
    from rlx.runs import load

    run = load(out)
    policy = run.policy(member=1)
    params = jax.tree.map(lambda x: x[1], agent.policy_params(result.state))
    cfg = jax.tree.map(lambda x: x[1], pop.cfg)
    act = jax.jit(agent.act, static_argnums=4)
    obs, _ = env.reset(jax.random.key(0), env_params)
    obs = obs + jax.random.normal(jax.random.key(1), obs.shape)  # off the reset distribution's narrow band
    for i in range(8):
        key = jax.random.key(100 + i)
        for deterministic in (True, False):
            expected = act(params, obs, key, cfg, deterministic)
            np.testing.assert_array_equal(np.asarray(policy.act(obs, key, deterministic)), np.asarray(expected))
    other = jax.tree.map(lambda x: x[0], agent.policy_params(result.state))
    assert any(  # member 1's params, not member 0's
        not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(jax.tree.leaves(other), jax.tree.leaves(params))
    )


def test_evaluate_is_rlx_evaluation_with_the_stated_keys(runner_run):
    out, result, agent, pop, env, env_params = runner_run
    from rlx.runs import load

    run = load(out)
    got = run.evaluate(episodes=16, seed=3)
    assert got["mean"].shape == got["std"].shape == (2,) and got["returns"].shape == got["lengths"].shape == (2, 16)
    params = agent.policy_params(result.state)
    one_member = jax.jit(lambda p, c, k: evaluate(agent, p, c, env, env_params, k, 16))
    for m in range(2):
        key = jax.random.fold_in(pop.keys[m], EVAL_KEY_SEED + 3)
        p, c = jax.tree.map(lambda x: x[m], (params, pop.cfg))
        want = one_member(p, c, key)
        np.testing.assert_array_equal(got["returns"][m], np.asarray(want["return"]))
        np.testing.assert_array_equal(got["lengths"][m], np.asarray(want["length"]))
        np.testing.assert_allclose(got["mean"][m], np.asarray(want["return"]).mean(), rtol=1e-6)
        np.testing.assert_allclose(got["std"][m], np.asarray(want["return"]).std(), rtol=1e-6)
    one = run.evaluate(episodes=16, member=1, seed=3)
    assert one["returns"].shape == (16,)
    np.testing.assert_array_equal(one["returns"], got["returns"][1])
    other = run.evaluate(episodes=16, seed=4)["returns"]
    assert not np.array_equal(other, got["returns"]), "another seed draws other episodes"


def test_rlx_eval_repeats_the_runs_final_evaluation(cli_run, capsys):
    out, printed = cli_run
    from rlx.runs import load

    final = json.load(open(os.path.join(out, "summary.json")))["eval_return"]
    shown = re.search(r"deterministic evaluation return per member: \[(.*)\]", printed).group(1)
    assert [float(x) for x in shown.split(",")] == np.round(final, 1).tolist()
    run = load(out)
    result = run.evaluate(episodes=16)
    assert result["mean"].tolist() == np.float32(final).tolist(), "seed 0 draws the final evaluation's episodes"
    code, text, err = _cli(["eval", out], capsys)
    assert code == 0, err
    lines = re.findall(r"member (\d) \(seed=(\d)\): ([\d.]+) ± ([\d.]+)", text)
    assert [(int(m), int(s)) for m, s, _, _ in lines] == [(0, 0), (1, 1)]
    assert [mean for *_, mean, _ in lines] == [f"{x:.2f}" for x in result["mean"]]
    assert [std for *_, std in lines] == [f"{x:.2f}" for x in result["std"]]
    assert f"at update {run.updates}:" in text and run.updates == 2
    code, text, _ = _cli(["eval", out, "--member", "1", "--episodes", "16", "--seed", "3"], capsys)
    assert code == 0 and "member 0" not in text
    one = run.evaluate(episodes=16, member=1, seed=3)
    assert f"member 1 (seed=1): {one['mean']:.2f} ± {one['std']:.2f}" in text


def test_a_run_from_two_devices_loads_on_one(runner_run, tmp_path):
    out, result, _, _, _, _ = runner_run
    saved = str(tmp_path / "leaves.npz")
    script = textwrap.dedent(f"""
        import jax, numpy as np, rlx
        from rlx.testing import host_leaves
        run = rlx.load({out!r})
        leaves = host_leaves(run.state())
        np.savez({saved!r}, *leaves)
        print("devices", len(jax.devices()), run.mesh.devices.size, run.updates)
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "devices 1 1 2" in done.stdout
    with np.load(saved) as data:
        loaded = [data[f"arr_{i}"] for i in range(len(data.files))]
    final = host_leaves(result.state)
    assert len(loaded) == len(final)
    for a, b in zip(loaded, final):
        np.testing.assert_array_equal(a, b)


def test_a_running_run_loads_at_its_newest_verified_checkpoint(runner_run, tmp_path):
    """A save in flight (no manifest yet), a torn metrics row and the run's lock held by
    its process: load reads the previous checkpoint and the whole rows, and changes nothing."""
    from rlx.checkpoint import MANIFEST
    from rlx.runfiles import RunLock
    from rlx.runs import load

    live = str(tmp_path / "live")
    shutil.copytree(runner_run[0], live)
    steps = sorted(int(s) for s in os.listdir(os.path.join(live, "checkpoints")) if s.isdigit())
    assert steps == [1, 2]
    os.unlink(os.path.join(live, "checkpoints", "2", MANIFEST))
    whole = read_metrics(os.path.join(live, "metrics.csv"))
    with open(os.path.join(live, "metrics.csv"), "a") as f:
        f.write("0,0,2,99")  # half a row
    with RunLock(live):
        run = load(live)
        assert run.updates == 1
        assert np.asarray(run.state().update_step).tolist() == [1, 1]
        _equal_columns(run.metrics, whole)
    assert os.path.isdir(os.path.join(live, "checkpoints", "2")), "the step in flight is left alone"


# -- record ---------------------------------------------------------------------------------
def _episode_lengths(policy, env, env_params, seed, episodes):
    """Steps of each deterministic episode, stepped here one by one (the keys record states)."""
    step = jax.jit(env.step)
    lengths = []
    for e in range(episodes):
        key, k_reset = jax.random.split(jax.random.fold_in(jax.random.key(seed), e))
        obs, state = env.reset(k_reset, env_params)
        n, done = 0, False
        while not done:
            key, k_act, k_env = jax.random.split(key, 3)
            obs, state, _, term, trunc, _ = step(k_env, state, policy.act(obs, k_act), env_params)
            n, done = n + 1, bool(term | trunc)
        lengths.append(n)
    return lengths


@pytest.mark.slow  # 19 s here; test_record_formats_and_unrenderable_envs_are_one_line stays
def test_rlx_record_writes_a_gif_frame_per_step(runner_run, tmp_path, capsys):
    from PIL import Image

    from rlx.runs import load

    out, _, _, _, env, env_params = runner_run
    gif = str(tmp_path / "clips" / "episodes.gif")
    code, text, err = _cli(["record", out, "--out", gif, "--member", "1", "--episodes", "2", "--seed", "7"], capsys)
    assert code == 0, err
    lengths = _episode_lengths(load(out).policy(1), env, env_params, seed=7, episodes=2)
    with Image.open(gif) as image:
        assert image.n_frames == sum(lengths)
        assert image.size[0] > 100 and image.size[1] > 100
    assert f"{sum(lengths)} frames, 2 episode(s) of member 1" in text
    assert "ALSA" not in err and "XDG" not in err


def test_record_formats_and_unrenderable_envs_are_one_line(runner_run, tmp_path, monkeypatch):
    from matplotlib import animation

    from rlx.runs import load

    run = load(runner_run[0])
    with pytest.raises(RunError, match=r"\.gif or \.mp4.*not \.avi"):
        run.record(str(tmp_path / "a.avi"))
    monkeypatch.setattr(animation.writers, "is_available", lambda name: False)
    with pytest.raises(RunError, match=r"needs ffmpeg, which is not installed: record a \.gif instead") as e:
        run.record(str(tmp_path / "a.mp4"))
    assert "\n" not in str(e.value) and not os.path.exists(tmp_path / "a.mp4")
    spec = json.load(open(os.path.join(runner_run[0], "config.json")))
    other = tmp_path / "grid"
    other.mkdir()
    json.dump({**spec, "env": "gymnax/DeepSea-bsuite"}, open(other / "config.json", "w"))
    with pytest.raises(RunError, match=r"gymnax/DeepSea-bsuite cannot be rendered: .*gymnax/CartPole-v1") as e:
        load(str(other)).record(str(tmp_path / "b.gif"))
    assert "\n" not in str(e.value)


# -- bad input ------------------------------------------------------------------------------
def _one_line(error, *pieces):
    text = str(error.value)
    assert "\n" not in text, text
    for piece in pieces:
        assert piece in text, text


def test_bad_run_directories_are_one_line_each(runner_run, tmp_path, capsys):
    from rlx.runs import load

    with pytest.raises(RunFileError) as e:
        load(str(tmp_path / "nowhere"))
    _one_line(e, str(tmp_path / "nowhere"), "is not a directory")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFileError) as e:
        load(str(tmp_path / "empty"))
    _one_line(e, os.path.join(str(tmp_path / "empty"), "config.json"), "holds no rlx run")

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text('{"algo": "ppo", ')
    with pytest.raises(RunFileError) as e:
        load(str(corrupt))
    _one_line(e, str(corrupt / "config.json"), "is corrupt")
    (corrupt / "config.json").write_text("[1, 2]")
    with pytest.raises(RunFileError) as e:
        load(str(corrupt))
    _one_line(e, str(corrupt / "config.json"), "names no 'algo' or 'kind'")

    spec = json.load(open(os.path.join(runner_run[0], "config.json")))
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    json.dump({**spec, "algo": "ppo2"}, open(unknown / "config.json", "w"))
    with pytest.raises(RunError) as e:
        load(str(unknown))
    _one_line(e, str(unknown / "config.json"), "unknown algorithm 'ppo2'", "Did you mean ppo", "registers it")
    code, _, err = _cli(["eval", str(unknown)], capsys)
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: ") and "ppo2" in err

    edited = tmp_path / "edited"
    edited.mkdir()
    json.dump({**spec, "seeds": [0, 2]}, open(edited / "config.json", "w"))
    with pytest.raises(RunFileError) as e:
        load(str(edited))
    _one_line(e, "do not rebuild the stored population")


def test_a_run_without_a_checkpoint_yet_gives_its_metrics(runner_run, tmp_path):
    from rlx.runs import load

    young = tmp_path / "young"
    young.mkdir()
    for name in ("config.json", "metrics.csv"):
        shutil.copy(os.path.join(runner_run[0], name), young / name)
    run = load(str(young))
    assert len(run.metrics["update_index"]) == 4
    for use in (lambda: run.updates, run.state, run.policy, run.evaluate):
        with pytest.raises(RunFileError) as e:
            use()
        _one_line(e, str(young / "checkpoints"), "holds no checkpoint yet", "after its first chunk of 1 update;")


def test_trainer_kind_runs_give_metrics_and_point_at_their_loaders(tmp_path):
    from rlx.runs import load

    for kind, loader in (("es", "rlx.agents.meta.es.load_params"), ("cmorl", "rlx.agents.morl.cmorl.load_archive")):
        d = tmp_path / kind
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"kind": kind, "env": "rlx/deep-sea-treasure", "seed": 4}))
        (d / "metrics.csv").write_text("member,seed,generation,fitness\n0,4,0,1.5\n0,4,1,2.25\n")
        run = load(str(d))
        assert run.kind == run.algorithm == kind and run.config_json["seed"] == 4
        assert run.metrics["fitness"].tolist() == [1.5, 2.25]
        assert run.members == [{"member": 0, "seed": 4}]
        for use in (run.policy, run.state, run.evaluate, lambda: run.record(str(d / "x.gif"))):
            with pytest.raises(RunError) as e:
                use()
            _one_line(e, f"is a {kind} run", loader)


# -- the package and the docs ---------------------------------------------------------------
def test_import_rlx_stays_cheap_and_has_load():
    script = "import sys, rlx; cheap = 'jax' not in sys.modules; from rlx.runs import load; print(cheap, rlx.load is load)"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True", "True"], done.stderr[-2000:]


def test_after_training_doc_example_runs(runner_run, tmp_path, monkeypatch):
    """docs/after-training.md's Python block, on a run at runs/cartpole."""
    doc = os.path.join(ROOT, "docs", "after-training.md")
    blocks = re.findall(r"```python\n(.*?)```", open(doc).read(), re.S)
    assert len(blocks) == 1
    (tmp_path / "runs").mkdir()
    os.symlink(runner_run[0], tmp_path / "runs" / "cartpole")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], doc, "exec"), namespace)  # noqa: S102 - our own documentation
    assert os.path.getsize(tmp_path / "episode.gif") > 0
    assert namespace["result"]["mean"].shape == (2,)
