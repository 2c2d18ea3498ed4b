"""The manifest (``manifest.json``) and the atomic file writes every store file goes through.

Layout of a store folder::

    manifest.json                  # the only file a reader trusts; rewritten atomically
    shard-00000.safetensors        # one per shard: every site [rows, *shape] plus "tokens" [rows] (int32)
    shard-00001.safetensors
    progress.rank1.json            # data-parallel harvests only: finished shards of each rank

A shard is listed in the manifest only after its file was fully written, fsynced and renamed into place;
a file that the manifest does not list (or lists with another checksum) is never read.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from .. import _io
from ._errors import StoreError

FORMAT = "tsi-activation-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENS = "tokens"  # the tensor name of the token ids in every shard


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def progress_name(rank: int) -> str:
    return f"progress.rank{rank}.json"


def atomic_write(path: Path, data: bytes, tag: str = "") -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder, fsync, then ``os.replace``.

    A process killed at any moment leaves either the old file or the new one, plus at worst a stray
    ``.tmp`` file (never read, removed by the next harvest)."""
    _io.atomic_write(path, data, mode=None, prefix=f".{path.name}.{tag}", fsync=True)
    _io.fsync_dir(path.parent)


def write_json(path: Path, obj: dict[str, Any], tag: str = "") -> None:
    atomic_write(path, (json.dumps(obj, indent=1) + "\n").encode("utf-8"), tag)


def read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoreError(f"no activation store at {str(path.parent)!r}: {path.name} is missing") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path} is not valid JSON ({exc.msg}); the store is damaged") from None
    return obj


def read_manifest(folder: Path) -> dict[str, Any]:
    manifest = read_json(folder / MANIFEST)
    if manifest.get("format") != FORMAT:
        raise StoreError(f"{folder / MANIFEST} is not a torch-shard-interpret activation store manifest")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise StoreError(
            f"{folder} uses store format version {manifest['format_version']}, newer than this "
            f"torch-shard-interpret reads ({FORMAT_VERSION}); upgrade torch-shard-interpret"
        )
    return manifest


def remove_stray_temps(folder: Path) -> None:
    """Delete temp files left by a killed writer (they were never renamed, so nothing refers to them)."""
    for p in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()
