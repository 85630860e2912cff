"""mkdocs hook (named in mkdocs.yml): lays out the package tree that the API reference reads.

`rlx.agents` and `rlx.envs` live in the top-level folders agents/ and envs/
(pyproject's `package-dir`), but griffe, which reads the sources for mkdocstrings, looks
for a package's submodules inside the package's own folder. So before a build this makes
build/api-src/rlx/: a link to every entry of rlx/, plus `agents` and `envs` linking to
those folders. mkdocs.yml's `paths: [build/api-src]` points the handler there. The links
are made idempotently (a new link is renamed over the old one), so two builds at once do
not break each other.
"""

from __future__ import annotations

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREE = os.path.join(ROOT, "build", "api-src", "rlx")


def _link(target: str, name: str) -> None:
    path = os.path.join(TREE, name)
    if os.path.islink(path) and os.readlink(path) == target:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    os.symlink(target, tmp)
    os.replace(tmp, path)


def build_tree() -> str:
    """Make (or refresh) build/api-src/rlx; return build/api-src."""
    os.makedirs(TREE, exist_ok=True)
    entries = {n: os.path.join(ROOT, "rlx", n) for n in os.listdir(os.path.join(ROOT, "rlx")) if n != "__pycache__"}
    entries.update(agents=os.path.join(ROOT, "agents"), envs=os.path.join(ROOT, "envs"))
    for name, target in entries.items():
        _link(target, name)
    for name in set(os.listdir(TREE)) - set(entries):  # a module removed from rlx/
        if os.path.islink(os.path.join(TREE, name)) and not name.endswith(".tmp"):
            os.unlink(os.path.join(TREE, name))
    return os.path.dirname(TREE)


def on_startup(command, dirty) -> None:
    build_tree()
