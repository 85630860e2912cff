"""Verified checkpoints of the full train state (params, optimiser, env state, keys,
normaliser, counters) through orbax, with a small JSON record beside each.

After orbax commits a step, a manifest (`rlx_manifest.json` in the step's folder) records
the step, the update count and a sha256 of every file. `restore_newest` restores the
newest step whose manifest and files verify and whose state agrees with its count, and
reports every newer step it had to pass over, so a flipped bit, a truncated or deleted
file or a kill mid-save costs one checkpoint, never the run. Old steps are removed only
after a newer one verifies, and at least `keep` verified steps stay.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from rlx import faults
from rlx.errors import RunFileError
from rlx.runfiles import atomic_write

MANIFEST = "rlx_manifest.json"


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(step_dir: str) -> dict[str, str]:
    """{relative path: sha256} of every file of a step but the manifest."""
    out = {}
    for root, _, names in os.walk(step_dir):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, step_dir)
            if rel != MANIFEST:
                out[rel] = _digest(path)
    return dict(sorted(out.items()))


class Checkpointer:
    """Save and restore `(state, meta)` pairs keyed by the update count."""

    def __init__(self, directory: str, keep: int = 2, writer: bool = True):
        self.directory = os.path.abspath(directory)
        self.keep = max(2, int(keep))
        self.writer = writer  # only one process writes manifests and removes steps
        self._verified: set[int] = set()  # steps this process wrote or checked
        # Retention is ours (after verification), so orbax keeps everything it writes.
        self._mgr = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=None, create=True)
        )

    def _step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(int(step)))

    def save(self, step: int, state: Any, meta: dict) -> None:
        step = int(step)
        self._check_disk(state)
        if step in self.all_steps():  # a step left unverified by a kill: write it again
            self._delete(step)
        self._mgr.save(
            step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        )
        # Block until written: a run killed right after this call loses nothing.
        self._mgr.wait_until_finished()
        faults.point("checkpoint.committed")
        if self.writer:
            record = {"step": step, "meta": meta, "files": _files(self._step_dir(step))}
            atomic_write(os.path.join(self._step_dir(step), MANIFEST), json.dumps(record, indent=1))
            self._verified.add(step)
            faults.point("checkpoint.verified")
            self._clean(newest=step)
            faults.point("checkpoint.cleaned")

    def _check_disk(self, state: Any) -> None:
        """Refuse a save the disk cannot hold before orbax starts it: a write that fails
        inside orbax's threads leaves them failing noisily until the process exits."""
        import errno

        from rlx.memory import fmt_bytes, tree_bytes

        need = int(1.1 * tree_bytes(state)) + (256 << 10)  # data, plus orbax's metadata files
        free = shutil.disk_usage(self.directory).free
        if free < need:
            raise OSError(errno.ENOSPC, f"a checkpoint needs about {fmt_bytes(need)}, {fmt_bytes(free)} is free",
                          self.directory)  # fmt: skip

    def all_steps(self) -> list[int]:
        self._mgr.reload()
        return sorted(int(s) for s in self._mgr.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def verify(self, step: int) -> str | None:
        """None if the step's manifest matches its files, else what is wrong (one line)."""
        path = os.path.join(self._step_dir(step), MANIFEST)
        try:
            with open(path) as f:
                record = json.load(f)
        except FileNotFoundError:
            return "it has no manifest (the save did not finish)"
        except (OSError, ValueError) as e:
            return f"its manifest is unreadable ({e.__class__.__name__})"
        if record.get("step") != step:
            return f"its manifest names step {record.get('step')}"
        if record.get("meta", {}).get("updates", step) != step:
            return f"its manifest records {record['meta'].get('updates')} updates"
        files = _files(self._step_dir(step))
        for rel, digest in record.get("files", {}).items():
            if rel not in files:
                return f"{rel} is missing"
            if files[rel] != digest:
                return f"{rel} fails its checksum"
        extra = sorted(set(files) - set(record.get("files", {})))
        return f"{extra[0]} is not in its manifest" if extra else None

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restore one step into the structure, dtypes and shardings of `like` (no checks)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        out = self._mgr.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        )
        return out["state"], dict(out["meta"])

    def restore_newest(
        self, like: Any, check: Callable[[Any, dict, int], str | None] | None = None
    ) -> tuple[Any, dict, int, list[tuple[int, str]]]:
        """`(state, meta, step, passed_over)` from the newest step that verifies.

        `check(state, meta, step)` may add a test of the restored state (None when it
        passes). `passed_over` lists `(step, reason)` for every newer step that failed; those
        steps are removed, so the run continues from `step`. A directory written before
        manifests existed is trusted if no step has one. Raises RunFileError when no step
        is usable."""
        steps = self.all_steps()
        legacy = steps and not any(os.path.exists(os.path.join(self._step_dir(s), MANIFEST)) for s in steps)
        passed: list[tuple[int, str]] = []
        for step in reversed(steps):
            reason = None if legacy else self.verify(step)
            if reason is None:
                try:
                    state, meta = self.restore(like, step)
                except Exception as e:  # a corrupt file orbax cannot read
                    reason = f"orbax cannot read it ({e.__class__.__name__}: {str(e).splitlines()[0][:80] if str(e) else ''})"
                else:
                    if int(meta.get("updates", -1)) != step:
                        reason = f"its record says {meta.get('updates')} updates"
                    elif check is not None:
                        reason = check(state, meta, step)
                    if reason is None:
                        self._verified.add(step)
                        if self.writer:
                            for bad, _ in passed:
                                self._delete(bad)
                        return state, meta, step, passed
            passed.append((step, reason))
        detail = "; ".join(f"update {s}: {r}" for s, r in passed) or "none found"
        raise RunFileError(f"no usable checkpoint in {self.directory} ({detail}); start a new run.")

    def _delete(self, step: int) -> None:
        path = self._step_dir(step)
        try:
            self._mgr.delete(step)
        except Exception:  # orbax refuses steps it cannot parse; the folder goes all the same
            pass
        shutil.rmtree(path, ignore_errors=True)
        self._verified.discard(step)
        self._mgr.reload()

    def _clean(self, newest: int) -> None:
        """Keep the newest `keep` verified steps up to `newest`; remove older ones, and every
        unverified step below the newest verified one."""
        kept = 0
        for step in reversed(self.all_steps()):
            if step > newest:
                continue
            if kept < self.keep and (step in self._verified or self.verify(step) is None):
                kept += 1
            elif kept >= 1:
                self._delete(step)

    def close(self) -> None:
        self._mgr.close()


def update_count_check(state: Any, meta: dict, step: int) -> str | None:
    """For states with an `update_step` counter: every member's must equal `step`."""
    counter = getattr(state, "update_step", None)
    if counter is None:
        return None
    from rlx.distributed import to_host

    values = np.asarray(to_host(counter)).ravel()
    if values.size and not np.all(values == step):
        return f"its state counts {sorted(set(values.tolist()))} updates, not {step}"
    return None


def read_state_arrays(step_dir: str) -> dict[str, np.ndarray]:
    """A checkpoint's state as host arrays `{leaf path: array}`, with no template, from
    any device topology: for inspecting and comparing checkpoints (typed keys come back
    as their key data). Each array has its leaf's shape, `[P, ...]` for a population."""
    path = os.path.join(step_dir, "state")
    reader = ocp.PyTreeCheckpointer()
    meta = reader.metadata(path)
    tree = getattr(getattr(meta, "item_metadata", meta), "tree", getattr(meta, "item_metadata", meta))
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    restored = reader.restore(path, restore_args=args)
    flat, _ = jax.tree_util.tree_flatten_with_path(restored)
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}
