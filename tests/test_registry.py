"""The algorithm registry: every family is registered, `rlx list` and `rlx train` read
it, listing imports no agent code, and a bad name or kind is one line."""

import subprocess
import sys

import pytest

from rlx import cli, registry

FAMILIES = {"ppo": "ppo", "sac": "sac", "dqn": "dqn", "c51": "dqn", "qrdqn": "dqn", "ddp-dqn": "ddp",
            "moppo": "morl", "dpo": "meta", "meta-test": "meta"}  # fmt: skip


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
    assert "run: python -m rlx.agents.meta.meta_test" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "pop", "--env", "gymnax/CartPole-v1"], "error: unknown algorithm 'pop'. Did you mean ppo"),
        (["train", "meta-test", "--env", "gymnax/CartPole-v1"], "error: meta-test is not trained by `rlx train`: run it with `python -m"),
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
