"""Record the golden results of tests/golden/cases.py into
tests/golden/cpu-<fingerprint>/<name>.npz (this CPU's records) and rewrite
tests/golden/README.md.

    .venv/bin/python scripts/record_golden.py            # every case
    .venv/bin/python scripts/record_golden.py ppo_cartpole dqn_cartpole

Runs under the test process setup (8 fake CPU devices, CPU async dispatch off), set
here before jax is imported, as tests/conftest.py does.
"""

import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_CPU_ENABLE_ASYNC_DISPATCH", "false")

import argparse  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden")
sys.path.insert(0, os.path.join(ROOT, "tests"))

from golden.cases import CASES, check_setup, cpu_fingerprint, outputs  # noqa: E402

# This CPU's records (tests/golden/cases.py: records_dir); the README stays in GOLDEN.
RECORDS = os.path.join(GOLDEN, f"cpu-{cpu_fingerprint()}")

COMMAND = ".venv/bin/python scripts/record_golden.py"
HEADER = """# Golden results

Bitwise reference results of tiny, fixed-seed runs of every agent family, to check that a
refactor changes no number. Each `<name>.npz` holds:

- `metrics.<k>`: every metric array the run returns (per update for single runs; for
  C-MORL the archive, every evaluated point and the per-stage history; for ES the
  generation's history row and every candidate's scores), floats as float64 and
  integers/booleans as int64 (both exact);
- `state_sha256`: sha256 over the bytes of every leaf of the final state in tree order
  (typed PRNG keys as `jax.random.key_data`); `state_leaf_paths` and `state_leaf_sha256`
  name and hash each leaf, to find the one that moved;
- `jax_version` and `record_seconds` (not checked).

Cases are defined in `cases.py` and checked by `tests/test_golden.py` (`ppo_cartpole`
and `dqn_cartpole` in the default suite, the rest marked slow:
`.venv/bin/python -m pytest -q -p no:cacheprovider -m '' tests/test_golden.py`).
Results are pinned for the test process setup (8 fake CPU devices,
`JAX_CPU_ENABLE_ASYNC_DISPATCH=false`, `XLA_FLAGS` otherwise unset), this jax/jaxlib and
this CPU's XLA code generation: each CPU kind keeps its records in `cpu-<fingerprint>/`
(`cases.cpu_fingerprint`: the bits of a small training-like program, the vector flags and
the jax version); the `.npz` files directly in this folder are the records made before
fingerprints were kept, used where no folder matches. Record a CPU's set at a commit
whose numbers are trusted, before a refactor. A refactor that renames, reorders or adds state leaves
changes `state_sha256` while the metrics still match: compare the per-leaf hashes.

Record (all cases, or the named ones): `{command} [name ...]`

| case | settings | seconds | KiB | metrics |
|---|---|---|---|---|
"""


def write_readme() -> None:
    rows = []
    for name, case in CASES.items():
        path = os.path.join(RECORDS, f"{name}.npz")
        if not os.path.exists(path):
            continue
        with np.load(path) as z:
            keys = [k.removeprefix("metrics.") for k in z.files if k.startswith("metrics.")]
            seconds = float(z["record_seconds"])
        kib = os.path.getsize(path) / 1024
        rows.append(f"| `{name}` | {case.settings} | {seconds:.1f} | {kib:.0f} | {', '.join(keys)} |")
    with open(os.path.join(GOLDEN, "README.md"), "w") as f:
        f.write(HEADER.format(command=COMMAND) + "\n".join(rows) + "\n")
        f.write(f"\nThe table shows `{os.path.basename(RECORDS)}/`.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"cases to record (default: all): {', '.join(CASES)}")
    names = parser.parse_args().names or list(CASES)
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    check_setup()
    for name in names:
        t = time.perf_counter()
        out = outputs(name)
        seconds = time.perf_counter() - t
        os.makedirs(RECORDS, exist_ok=True)
        path = os.path.join(RECORDS, f"{name}.npz")
        np.savez_compressed(path, **out, record_seconds=np.asarray(seconds))
        print(f"{name}: {seconds:.1f} s, {os.path.getsize(path) / 1024:.0f} KiB, state {out['state_sha256']}", flush=True)
    write_readme()


if __name__ == "__main__":
    print(f"jax {jax.__version__}, {len(jax.devices())} devices", flush=True)
    main()
