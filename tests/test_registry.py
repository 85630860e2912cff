"""The algorithm registry: every family is registered, `rlx list` and `rlx train` read
it, listing imports no agent code, and a bad name or kind is one line."""

import subprocess
import sys

import pytest

from rlx import cli, registry

FAMILIES = {"ppo": "ppo", "sac": "sac", "dqn": "dqn", "c51": "dqn", "qrdqn": "dqn", "ddp-dqn": "ddp",
            "moppo": "morl", "cmorl": "morl", "dpo": "meta", "meta-test": "meta", "lpo-es": "meta"}  # fmt: skip


def test_every_family_is_registered_and_loads():
    found = registry.entries()
    for name, family in FAMILIES.items():
        assert found[name].family == family
        module, config_cls, builder = found[name].load()
        assert callable(builder)
        if found[name].kind == "agent":
            assert isinstance(config_cls, type)
            for preset in found[name].presets:
                assert isinstance(found[name].make_config(preset), config_cls)


def test_listing_imports_no_agent_module():
    code = "import sys; from rlx import registry; registry.entries(); print(sorted(m for m in sys.modules if m.startswith('rlx.agents.') and m.count('.') >= 2 and not m.endswith(('ddp', 'morl', 'meta'))), 'jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[] False", out.stdout + out.stderr


def test_rlx_list_shows_every_algorithm(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in FAMILIES:
        assert f"\n  {name} " in out
    assert "run: rlx train meta-test" in out and "run: rlx train cmorl" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "pop", "--env", "gymnax/CartPole-v1"], "error: unknown algorithm 'pop'. Did you mean ppo"),
        (["sweep", "meta-test", "--env", "gymnax/CartPole-v1"], "error: meta-test has a driver of its own, without sweeps: run it with `rlx train meta-test"),
        (["train", "dpo", "--env", "gymnax/CartPole-v1", "--preset", "brax"], "error: --preset 'brax' is invalid for dpo"),
    ],
)
def test_bad_algorithm_is_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err, err


def test_a_second_registration_must_agree():
    entry = registry.get("ppo")
    registry.register(entry)  # the same entry again is fine
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.Algorithm("ppo", "another", "my.module", "Config"))
    with pytest.raises(ValueError, match="kind = 'job' is invalid"):
        registry.register(registry.Algorithm("x", "x", "m", "C", kind="job"))


def test_trainers_run_from_rlx_train_and_resume(tmp_path, capsys):
    """`rlx train cmorl` and `rlx train lpo-es`, end to end at toy sizes, then resumed."""
    out = str(tmp_path / "cmorl")
    tiny = ["--set", "num_envs=4", "num_steps=16", "num_minibatches=2", "update_epochs=2"]
    argv = ["train", "cmorl", "--env", "rlx/deep-sea-treasure", "--rounds", "1", "--no-progress", *tiny,
            "--cmorl-set", "init_divisions=1", "init_updates=2", "num_select=1", "constrained_updates=2"]  # fmt: skip
    assert cli.main(argv + ["--out", out]) == 0
    import os

    from rlx.logging import read_metrics

    assert {"front.csv", "front.png", "metrics.csv", "config.json", "archive"} <= set(os.listdir(out))
    assert read_metrics(os.path.join(out, "metrics.csv"))["round"].tolist() == [0.0, 1.0]
    assert cli.main(argv + ["--resume", out]) == 0  # finished: nothing to do, the same front
    assert "policies on the front after 1 rounds" in capsys.readouterr().out
    es_out = str(tmp_path / "lpo")
    es = ["train", "lpo-es", "--generations", "2", "--population", "4", "--steps", "256", "--hidden", "4",
          "--eval-seeds", "0", "--no-progress", "--set", "num_envs=4", "num_steps=16", "num_minibatches=2"]  # fmt: skip
    assert cli.main(es + ["--out", es_out, "--log", "tensorboard"]) == 0
    es_metrics = read_metrics(os.path.join(es_out, "metrics.csv"))
    assert es_metrics["generation"].tolist() == [0.0, 1.0]
    assert {"mean.npz", "best.npz", "summary.json"} <= set(os.listdir(es_out))
    pytest.importorskip("tensorboardX")
    from tests.test_tracking import read_tensorboard

    tb = os.path.join(es_out, "tensorboard")
    (member_dir,) = [d for d in os.listdir(tb) if os.path.isdir(os.path.join(tb, d))]  # the trainer's one member
    logged = read_tensorboard(os.path.join(tb, member_dir))
    assert logged["fitness_mean"] == pytest.approx(dict(enumerate(es_metrics["fitness_mean"])), rel=1e-5)
