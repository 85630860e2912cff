"""Every Python block of docs/extending.md runs as written (in one namespace, in order)."""

import os
import re

from rlx import registry
from rlx.envs import registry as env_registry

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "extending.md")


def test_extending_examples_run(monkeypatch):
    # The examples register names: keep them out of the other tests' registries.
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry.entries()))
    monkeypatch.setattr(env_registry, "_REGISTERED", {})
    blocks = re.findall(r"```python\n(.*?)```", open(DOC).read(), re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, DOC, "exec"), namespace)  # noqa: S102 - our own documentation
