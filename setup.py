"""Packages of the wheel: rlx/ is `rlx`; agents/ and envs/, with every subpackage found at
build time, are `rlx.agents` and `rlx.envs` (folders mapped in pyproject.toml's
`package-dir`). Everything else is in pyproject.toml."""

import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def packages() -> list[str]:
    out = []
    for folder, name in (("rlx", "rlx"), ("agents", "rlx.agents"), ("envs", "rlx.envs")):
        out += [name] + [f"{name}.{p}" for p in find_packages(os.path.join(ROOT, folder))]
    return out


setup(packages=packages())
