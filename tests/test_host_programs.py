"""C-MORL and GROOVE on the one host loop (`rlx.hostloop`): an interrupted run resumed
from its checkpoint ends exactly where an uninterrupted one does, and its run files are
the loop's (config.json, metrics.csv, checkpoints/). The ES meta-trainer's resume is
tested in tests/test_meta.py, the population Runner's in tests/test_faults.py."""

import json
import os

import jax
import numpy as np
import pytest

from rlx import envs
from rlx.agents.morl import cmorl, moppo
from rlx.errors import ResumeMismatchError

from conftest import TINY_PPO


class Stop(Exception):
    """Raised from a progress callback: the run dies right after a saved step."""


def stop_after(n: int):
    calls = []

    def callback(*args):
        calls.append(args)
        if len(calls) == n:
            raise Stop

    return callback


def same_tree(a, b) -> None:
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def same_rows(a: list[dict], b: list[dict]) -> None:
    assert [sorted(r) for r in a] == [sorted(r) for r in b]
    for x, y in zip(a, b):
        for k in x:
            if isinstance(x[k], float):
                np.testing.assert_array_equal(x[k], y[k], err_msg=k)  # NaN equals NaN here
            else:
                assert x[k] == y[k], k


# -- C-MORL ------------------------------------------------------------------------------------------
def _cmorl_setup():
    env, params = envs.make("rlx/fruit-tree", depth=5)
    tiny = {k: v for k, v in TINY_PPO.items() if k != "total_steps"}
    cfg = moppo.MOPPOConfig(weights=np.full(6, 1 / 6), normalize_obs=True, **tiny)
    ccfg = cmorl.CMORLConfig(init_divisions=1, init_updates=2, rounds=2, num_select=1, constrained_updates=2)
    return env, params, cfg, ccfg


def test_cmorl_resumed_after_a_kill_equals_the_uninterrupted_run(tmp_path):
    env, params, cfg, ccfg = _cmorl_setup()
    whole = cmorl.run(env, params, cfg, ccfg, seed=0)
    out = str(tmp_path / "cmorl")
    with pytest.raises(Stop):  # dies after round 1 is saved
        cmorl.run(env, params, cfg, ccfg, seed=0, out_dir=out, on_round=stop_after(2))
    assert {"checkpoints", "config.json", "metrics.csv", "stage1"} <= set(os.listdir(out))
    assert json.load(open(os.path.join(out, "config.json")))["kind"] == "cmorl"
    resumed = cmorl.run(env, params, cfg, ccfg, seed=0, out_dir=out, resume=True)
    np.testing.assert_array_equal(resumed.points, whole.points)
    np.testing.assert_array_equal(resumed.ids, whole.ids)
    np.testing.assert_array_equal(resumed.all_points, whole.all_points)
    np.testing.assert_array_equal(resumed.undiscounted, whole.undiscounted)
    assert resumed.env_steps == whole.env_steps and resumed.eval_steps == whole.eval_steps
    same_rows(resumed.history, whole.history)
    assert [r["round"] for r in resumed.history] == [0, 1, 2]
    assert sorted(resumed.policies) == sorted(whole.policies)
    for i in whole.policies:
        same_tree(resumed.policies[i], whole.policies[i])
    with pytest.raises(FileExistsError):
        cmorl.run(env, params, cfg, ccfg, seed=0, out_dir=out)
    with pytest.raises(ResumeMismatchError, match=r"cmorl\.beta"):
        cmorl.run(env, params, cfg, ccfg.replace(beta=0.5), seed=0, out_dir=out, resume=True)


# -- GROOVE ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_groove_resumed_after_a_kill_equals_the_uninterrupted_run(tmp_path):
    from rlx.agents.meta import groove, lpg
    from rlx.agents.meta.es import ESConfig
    from rlx.envs import meta_grid as mg

    env = mg.MetaGrid(max_size=3, max_objects=1)
    dist = mg.GridDistribution(min_size=2, max_size=3, max_objects=1, walls=1, episode_length=(5, 15), lifetime=(3, 8))
    tiny = dict(num_envs=2, num_steps=4, meta_hidden=4, max_lifetime=8)
    init = lpg.init_params(jax.random.key(0), False, 4)
    cfg, a2c = lpg.LPGConfig(**tiny, lpg_params=init), lpg.LPGConfig(**tiny, update_rule="a2c")
    es = ESConfig(population_size=4, generations=3, sigma=0.1, lr=0.01, eval_every=0, devices=1)
    args = (env, cfg, a2c, dist, init, es, 2, ("regret",), 4)
    whole = groove.run(*args)["regret"]
    out = str(tmp_path / "groove")

    import rlx.hostloop

    class Dying(rlx.hostloop.HostLoop):  # dies after generation 2 is saved
        def __init__(self, *a, **k):
            super().__init__(*a, **{**k, "on_chunk": stop_after(2)})

    original = rlx.hostloop.HostLoop
    rlx.hostloop.HostLoop = Dying
    try:
        with pytest.raises(Stop):
            groove.run(*args, out_dir=out)
    finally:
        rlx.hostloop.HostLoop = original
    resumed = groove.run(*args, out_dir=out, resume=True)["regret"]
    same_tree(resumed.mean, whole.mean)
    same_tree(resumed.buffer, whole.buffer)
    for k, v in whole.history.items():
        if k != "seconds":
            np.testing.assert_array_equal(resumed.history[k], v, err_msg=k)
    for k, v in whole.drawn.items():
        np.testing.assert_array_equal(resumed.drawn[k], v, err_msg=k)
    assert whole.history["antagonist_runs"][-1] >= 2  # the first generation's levels are all new


def test_progress_off_a_terminal_is_a_plain_line_per_chunk(tmp_path, tiny_ppo, capsys, monkeypatch):
    """In a log file (stderr not a terminal) the host loop prints one line per chunk with
    the step, env steps, steps/s and return; `PLAIN_PROGRESS_S` only thins out chunks that
    come faster than it."""
    from rlx import hostloop
    from rlx.population import make_population
    from rlx.train import Runner

    agent, cfg, params = tiny_ppo
    pop = make_population(cfg, seeds=[0, 1])
    monkeypatch.setattr(hostloop, "PLAIN_PROGRESS_S", 0.0)
    Runner(agent, pop, params, str(tmp_path / "run"), chunk_updates=2, devices=1, progress=True,
           description="ppo test").run()  # fmt: skip
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("ppo test:")]
    total = agent.num_updates(cfg)
    assert [ln.split()[3] for ln in lines] == [f"{u}/{total}" for u in range(2, total + 1, 2)]
    steps_per_update = 2 * cfg.num_envs * cfg.num_steps  # both members
    for i, ln in enumerate(lines):
        assert f"env steps {steps_per_update * 2 * (i + 1):,}" in ln and " return " in ln
    assert all("steps/s" in ln for ln in lines[1:])  # a rate needs two chunks
    # Chunks faster than the limit are thinned out; the last one always prints.
    monkeypatch.setattr(hostloop, "PLAIN_PROGRESS_S", 3600.0)
    bar = hostloop.Progress(True, 6, 0, "ppo test")
    for _ in range(3):
        bar.advance(2, {"env_steps": np.full((2, 2), 64), "episode_return": np.ones((2, 2))})
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("ppo test:")]
    assert len(lines) == 1 and "6/6" in lines[0]
