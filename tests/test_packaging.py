"""Packaging: the wheel built from (a copy of) the working tree holds every module under
rlx/, agents/ and envs/ as rlx, rlx.agents and rlx.envs, a subpackage added later
included, and rlx/py.typed; (slow) installed into a fresh venv, every module imports.

The build runs offline (`--no-build-isolation`) with this venv's setuptools, which must
satisfy the build requirement (setuptools >= 68, and >= 70.1 or the `wheel` package
for bdist_wheel); otherwise the tests are skipped with the reason."""

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = {"rlx": "rlx", "agents": "rlx/agents", "envs": "rlx/envs"}  # tree folder -> wheel folder
PROBE = "agents/_probe/nested"  # a package the pyproject never names


def build_problem() -> str | None:
    try:
        import setuptools
        from packaging.version import Version
    except ImportError as e:
        return f"cannot build the wheel offline: {e}"
    v = Version(setuptools.__version__)
    if v < Version("68"):
        return f"this venv's setuptools {v} is older than the build requirement setuptools>=68"
    if v < Version("70.1") and importlib.util.find_spec("wheel") is None:
        return f"this venv's setuptools {v} needs the `wheel` package to build wheels"
    return None


def tree_modules(root: str) -> set[str]:
    """Wheel paths of every .py file under the tree's package folders."""
    out = set()
    for folder, target in FOLDERS.items():
        base = os.path.join(root, folder)
        for d, dirs, files in os.walk(base):
            dirs[:] = [x for x in dirs if x != "__pycache__"]
            rel = os.path.relpath(d, base)
            out |= {os.path.normpath(os.path.join(target, rel, f)) for f in files if f.endswith(".py")}
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """(wheel path, expected modules): built from a copy, so that the repo gets no build/
    folder, with a nested probe package added to the copy."""
    if problem := build_problem():
        pytest.skip(problem)
    src = tmp_path_factory.mktemp("src")
    for name in os.listdir(ROOT):
        path = os.path.join(ROOT, name)
        if name in FOLDERS:
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif os.path.isfile(path):
            shutil.copy2(path, src / name)
    os.makedirs(src / PROBE)
    for d in (os.path.dirname(PROBE), PROBE):
        (src / d / "__init__.py").write_text("")
    (src / PROBE / "mod.py").write_text("VALUE = 1\n")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(out)], check=True, cwd=out)  # fmt: skip
    (whl,) = out.glob("*.whl")
    return str(whl), tree_modules(str(src))


def test_wheel_holds_every_module_and_py_typed(wheel):
    whl, expected = wheel
    names = zipfile.ZipFile(whl).namelist()
    modules = {n for n in names if n.endswith(".py")}
    assert "rlx/agents/_probe/nested/mod.py" in modules  # found without naming it anywhere
    assert sorted(expected - modules) == [], "missing from the wheel"
    assert sorted(modules - expected) == [], "in the wheel but not in the tree"
    assert "rlx/py.typed" in names
    assert {n.split("/")[0] for n in names} == {"rlx", "rlx-0.1.0.dist-info"}


@pytest.mark.slow
def test_installed_wheel_imports_every_module_outside_the_repo(wheel, tmp_path):
    whl, expected = wheel
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", whl],
                   check=True)  # fmt: skip
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    # The locked dependencies, as a plain path: the editable install's .pth (its finder of rlx) is not run.
    with open(os.path.join(site, "locked_deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    names = sorted(m[: -len(".py")].replace("/", ".").removesuffix(".__init__") for m in expected if "_probe" not in m)
    assert "rlx.agents.meta.es" in names and "rlx.envs.mo.spec" in names
    script = (
        "import importlib, sys\n"
        f"site = {site!r}\n"
        "bad = []\n"
        f"for name in {names!r}:\n"
        "    mod = importlib.import_module(name)\n"
        "    if not mod.__file__.startswith(site):\n"
        "        bad.append((name, mod.__file__))\n"
        "assert not any('editable' in m for m in sys.modules), 'the editable finder ran'\n"
        "assert not bad, bad\n"
        "print(len(sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out = subprocess.run([python, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-4000:]


def test_agent_packages_name_every_submodule_and_import_them_lazily():
    """Each agent package's __all__ names its modules; they import on first use, not with the package."""
    import importlib
    import pkgutil
    import subprocess
    import sys

    for name in ("rlx.agents", "rlx.agents.ddp", "rlx.agents.meta", "rlx.agents.morl"):
        package = importlib.import_module(name)
        modules = {m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")}
        assert set(package.__all__) == modules, name
        assert dir(package) == sorted(package.__all__)
        for sub in package.__all__:
            assert getattr(package, sub).__name__ == f"{name}.{sub}"
    code = "import sys, rlx.agents; print('jax' in sys.modules, 'rlx.agents.ppo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr
