"""The documentation: the mkdocs site (guides and the API reference generated from the
docstrings) builds with warnings as errors and has a section for every module; every
public function and class of rlx, rlx.agents and rlx.envs has a docstring, which gives
shapes where the function takes or returns arrays; no tracked file names a design note
that the repository does not contain."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("rlx", "rlx.agents", "rlx.envs")
BUILD_SECONDS = 60  # the whole build; it took 4-5 s on a 2-core CPU


def module_names() -> list[str]:
    """Every module under rlx, rlx.agents and rlx.envs, none of whose parts is private."""
    names = set()
    for top in PACKAGES:
        package = importlib.import_module(top)
        names.add(top)
        for m in pkgutil.walk_packages(package.__path__, prefix=top + ".", onerror=lambda name: None):
            if not any(part.startswith("_") for part in m.name.split(".")):
                names.add(m.name)
    return sorted(names)


def import_or_skip_reason(name: str):
    """(module, None), or (None, reason) when the module needs a package that is not installed."""
    try:
        return importlib.import_module(name), None
    except ModuleNotFoundError as e:
        if e.name and not e.name.startswith("rlx"):
            return None, f"{name} needs {e.name}, which is not installed"
        raise


def public_objects(module) -> list[tuple[str, object]]:
    """(name, object) for each public function and class defined in the module itself:
    those named in `__all__` where the module has one, else those without a leading _."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    out = []
    for n in names:
        obj = getattr(module, n, None)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", None) == module.__name__:
            out.append((n, obj))
    return out


def own_docstring(obj) -> str:
    """The object's own docstring; '' for none, and for the `Name(field, ...)` text that
    NamedTuple and dataclass put in place of a missing one."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    doc = (doc or "").strip()
    if inspect.isclass(obj) and re.fullmatch(rf"{re.escape(obj.__name__)}\(.*\)", doc, flags=re.S):
        return ""
    return doc


ARRAY = re.compile(r"\b(jax\.Array|jnp\.ndarray|np\.ndarray|numpy\.ndarray|chex\.Array|Array|ndarray)\b")
SHAPE = re.compile(r"\[[^\[\]\n]*\](?!\()|\bscalars?\b|\b(any|same|its|their|each) shapes?\b", flags=re.I)


def annotation_text(annotation) -> str:
    if isinstance(annotation, str):
        return annotation
    return inspect.formatannotation(annotation)


KEYS = ("key", "rng")  # one PRNG key: its shape is always the same, no docstring need repeat it


def array_annotations(fn) -> list[str]:
    """Names of the parameters (and 'return') annotated as arrays, PRNG keys aside."""
    out = []
    for name, annotation in getattr(fn, "__annotations__", {}).items():
        if name not in KEYS and ARRAY.search(annotation_text(annotation)):
            out.append(name)
    return out


MODULES = module_names()


@pytest.mark.parametrize("name", MODULES)
def test_every_public_function_and_class_has_a_docstring_with_shapes_for_arrays(name):
    module, reason = import_or_skip_reason(name)
    if module is None:
        pytest.skip(reason)
    missing = [] if (module.__doc__ or "").strip() else ["(the module)"]
    no_shape = []
    for attr, obj in public_objects(module):
        doc = own_docstring(obj)
        if not doc:
            missing.append(attr)
        elif inspect.isfunction(obj) and array_annotations(obj) and not SHAPE.search(doc):
            no_shape.append(f"{attr} ({', '.join(array_annotations(obj))})")
    assert not missing, f"{name}: no docstring: {', '.join(missing)}"
    assert not no_shape, (
        f"{name}: takes or returns arrays, but the docstring names no shape "
        f"([B, A], 'scalar', 'any shape'): {', '.join(no_shape)}"
    )


def test_module_list_covers_the_three_packages():
    assert {"rlx.train", "rlx.agents.ppo", "rlx.agents.meta.es", "rlx.envs.mo.spec", "rlx.envs.tabular.mdp"} <= set(MODULES)


def test_shape_and_array_patterns():
    assert SHAPE.search("rewards: `[T, B]`") and SHAPE.search("a scalar") and SHAPE.search("any shape")
    assert not SHAPE.search("see [the docs](x.md)") and not SHAPE.search("returns the loss")
    assert ARRAY.search("jax.Array | None") and ARRAY.search("np.ndarray") and not ARRAY.search("ArrayTree")

    def f(x: "jax.Array", n: int) -> "float":
        """x: [B]."""

    assert array_annotations(f) == ["x"]


def nav_pages(text: str) -> set[str]:
    return set(re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?([\w./-]+\.md)\s*$", text, flags=re.M))


def test_every_docs_page_is_in_the_nav():
    """Every committed page of docs/ is in mkdocs.yml's nav (a page still being written, not
    yet tracked, may wait), and every page the nav names exists."""
    with open(os.path.join(ROOT, "mkdocs.yml")) as f:
        nav = nav_pages(f.read())
    listed = subprocess.run(["git", "ls-files", "docs"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    tracked = {os.path.relpath(p, "docs") for p in listed.stdout.split() if p.endswith(".md")}
    assert sorted(tracked - nav) == [], "pages missing from mkdocs.yml's nav: add them there"
    absent = [p for p in nav if not os.path.isfile(os.path.join(ROOT, "docs", p))]
    assert absent == [], "mkdocs.yml's nav names pages that do not exist"


def test_mkdocs_builds_strict_with_a_section_for_every_module(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings_handlers") is None:
        pytest.skip("mkdocs or mkdocstrings-python is not installed (pip install -e '.[docs]')")
    site = tmp_path / "site"
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    seconds = time.monotonic() - start
    assert out.returncode == 0, out.stderr[-6000:]
    assert seconds < BUILD_SECONDS, f"mkdocs build took {seconds:.0f} s"
    html = ""
    for page in (site / "api").glob("*.html"):
        html += page.read_text()
    absent = [name for name in MODULES if f'id="{name}"' not in html]
    assert absent == [], "modules without a section in the API reference"
    assert 'id="rlx.use_every_cpu_core"' in html and 'id="rlx.agents.ppo.make_agent"' in html


# Design notes kept outside the repository; a reference to one cannot be followed here.
ABSENT_DOCUMENTS = ("ARCHITECTURE.md", "ddp.md", "morl.md", "meta.md")


def test_no_tracked_file_names_a_document_the_repository_does_not_contain():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: " + listed.stderr.decode().strip()[:200])
    files = [p for p in listed.stdout.decode().split("\0") if p]
    absent = [d for d in ABSENT_DOCUMENTS if d not in {os.path.basename(p) for p in files}]
    if not absent:
        pytest.skip("the repository now contains every one of these documents")
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(re.escape(d) for d in absent) + r")\b")
    hits = []
    for path in files:
        full = os.path.join(ROOT, path)
        if path == "tests/test_docs.py" or not os.path.isfile(full):
            continue
        with open(full, "rb") as f:
            data = f.read()
        if b"\0" in data[:4096]:  # binary
            continue
        for i, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path}:{i}: {line.strip()[:120]}")
    assert hits == [], "state the fact instead of pointing to a document the repository lacks:\n" + "\n".join(hits)
