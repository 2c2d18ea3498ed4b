"""``resume=True``: which finished shards of an earlier harvest into the same folder can be kept as they are.

A shard is kept only when everything about it checks out: its manifest (or progress file) entry is well
formed, its file has the recorded size, its header agrees with the store (store id, index, sites, shapes,
dtype) and its sha256 is the recorded one, whether the earlier harvest finished or not. Any other shard
is computed again and its file rewritten. Under data parallelism each rank reads (hashes) only the shards
it would otherwise compute; the others are checked by their own rank.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ._check import check_header, check_manifest, entry_problem
from ._dist import Group
from ._errors import StoreCorruptError, StoreError, StoreMismatchError
from ._manifest import MANIFEST, read_json, read_manifest
from ._settings import settings_diff
from ._store import sha256_file


def existing(folder: Path, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """The manifest already in ``folder`` (``None``: none); refuses to touch it without resume/overwrite."""
    if not (folder / MANIFEST).exists():
        return None
    if not resume and not overwrite:
        try:
            state = "a finished" if read_manifest(folder).get("complete") else "an unfinished"
        except StoreError:
            state = "a damaged"
        raise StoreError(
            f"{str(folder)!r} already holds {state} activation store; pass resume=True to continue "
            "it, overwrite=True to replace it, or choose another folder"
        )
    if overwrite:  # replaced anyway: a damaged manifest does not stop it
        try:
            return read_manifest(folder)
        except StoreError:
            return {}
    return read_manifest(folder)


def reusable(folder: Path, old: dict[str, Any], settings: dict[str, Any], store: dict[str, Any],
             group: Group) -> dict[int, dict[str, Any]]:  # fmt: skip
    """The finished shards (from the manifest and any rank's progress file) that can be kept as they are.

    ``settings``: this harvest's; ``store``: what the shards are checked against (settings + store id)."""
    diff = settings_diff(old, settings)
    if diff:
        raise StoreMismatchError(
            f"cannot resume the store at {str(folder)!r}: it was harvested with other settings ("
            + "; ".join(f"{k}: {old.get(k)!r} now {settings[k]!r}" for k in diff)
            + "); use the same arguments, overwrite=True, or another folder"
        )
    listed = old.get("shards")
    candidates: dict[int, dict[str, Any]] = {}
    for entry in listed if isinstance(listed, list) else []:
        _add(candidates, entry, store)
    for p in sorted(folder.glob("progress.rank*.json")):
        with contextlib.suppress(StoreError):
            prog = read_json(p).get("shards")
            for entry in prog if isinstance(prog, list) else []:
                _add(candidates, entry, store)
    keep = {}
    for k, e in candidates.items():
        if k % group.world_size != group.rank or shard_ok(folder, store, e):
            keep[k] = e
    return keep


def _add(candidates: dict[int, dict[str, Any]], entry: Any, store: dict[str, Any]) -> None:
    if entry_problem(entry, store["context"], store["shard_rows"]) is None:
        candidates[entry["index"]] = entry


def shard_ok(folder: Path, store: dict[str, Any], entry: dict[str, Any]) -> bool:
    """Size, header and sha256 of one shard file agree with its entry and the store."""
    file = folder / entry["file"]
    try:
        if file.stat().st_size != entry["bytes"]:
            return False
        check_header(folder, store, entry)
        return sha256_file(file) == entry["sha256"]
    except (OSError, StoreCorruptError):
        return False


def whole(folder: Path, old: dict[str, Any], done: dict[int, dict[str, Any]]) -> bool:
    """A finished store whose manifest checks out and every listed shard of which is kept."""
    if not old.get("complete"):
        return False
    try:
        shards = check_manifest(folder, old)
    except StoreError:
        return False
    return len(shards) == len(old["shards"]) and all(done.get(s["index"]) == s for s in shards)


def clear(folder: Path) -> None:
    """Delete an old store's files (``overwrite=True``)."""
    for p in [*folder.glob("shard-*.safetensors"), *folder.glob("progress.rank*.json")]:
        p.unlink()
    with contextlib.suppress(FileNotFoundError):
        (folder / MANIFEST).unlink()
