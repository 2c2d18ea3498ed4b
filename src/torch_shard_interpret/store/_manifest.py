"""The manifest (``manifest.json``) and the atomic file writes every store file goes through.

Layout of a store folder::

    manifest.json                  # the only file a reader trusts; rewritten atomically
    shard-00000.safetensors        # one per shard: every site [rows, *shape] plus "tokens" [rows] (int32),
                                   # metadata "tsi": {format, index, seq_start, context, store_id}
    shard-00001.safetensors
    progress.rank1.json            # data-parallel harvests only: finished shards of each rank

A shard is listed in the manifest only after its file was fully written, fsynced and renamed into place;
a file that the manifest does not list (or lists with another checksum) is never read. ``store_id``
(manifest and every shard; see ``store_id``) is absent from stores written before it existed, which
open and resume as before.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from .. import _io
from ._errors import StoreError

FORMAT = "tsi-activation-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENS = "tokens"  # the tensor name of the token ids in every shard
STORE_DTYPES = ("float32", "bfloat16", "float16")  # the dtypes a store holds on disk
# The settings a store id is computed from: what fixes the bytes of every shard.
ID_SETTINGS = ("sites", "dtype", "context", "batch_size", "shard_rows", "source")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def progress_name(rank: int) -> str:
    return f"progress.rank{rank}.json"


def atomic_write(path: Path, data: bytes, tag: str = "") -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder, fsync, then ``os.replace``.

    A process killed at any moment leaves either the old file or the new one, plus at worst a stray
    ``.tmp`` file (never read, removed by the next harvest). A failed write (disk full, no permission)
    raises ``StoreError`` naming ``path``; the temp file is removed."""
    try:
        _io.atomic_write(path, data, mode=None, prefix=f".{path.name}.{tag}", fsync=True)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreError(
                f"the disk is full (no space left on the device) while writing {path}; free some space and "
                "rerun with resume=True to keep the finished shards, or choose a folder on another disk"
            ) from None
        raise StoreError(
            f"cannot write {path} ({exc.strerror or exc}); check the folder's permissions and free space, "
            "then rerun with resume=True"
        ) from None
    _io.fsync_dir(path.parent)


def write_json(path: Path, obj: dict[str, Any], tag: str = "") -> None:
    atomic_write(path, (json.dumps(obj, indent=1) + "\n").encode("utf-8"), tag)


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; a missing, unreadable, non-JSON or non-object file is a ``StoreError``."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"no activation store at {str(path.parent)!r}: {path.name} is missing") from None
    except OSError as exc:
        raise StoreError(f"{path} cannot be read ({exc.strerror or exc})") from None
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise StoreError(f"{path} is not UTF-8 text (a binary file?); the store is damaged") from None
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path} is not valid JSON ({exc.msg}); the store is damaged") from None
    if not isinstance(obj, dict):
        raise StoreError(f"{path} holds a JSON {type(obj).__name__}, not an object; the store is damaged")
    return obj


def read_manifest(folder: Path) -> dict[str, Any]:
    manifest = read_json(folder / MANIFEST)
    if manifest.get("format") != FORMAT:
        raise StoreError(f"{folder / MANIFEST} is not a torch-shard-interpret activation store manifest")
    version = manifest.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise StoreError(
            f"{folder / MANIFEST} has format_version {version!r}, not an integer; the store is damaged"
        )
    if version > FORMAT_VERSION:
        raise StoreError(
            f"{folder} uses store format version {manifest['format_version']}, newer than this "
            f"torch-shard-interpret reads ({FORMAT_VERSION}); upgrade torch-shard-interpret"
        )
    return manifest


def store_id(settings: dict[str, Any]) -> str:
    """The id written into the manifest and every shard: a hash of the settings that fix the shards' bytes.

    A hash rather than a random id, so that the same harvest gives the same bytes in any run, folder or
    rank (resume and data-parallel ranks need nothing from each other); a store with other settings (data,
    sites, dtype, context...) has another id, so its shards are refused here. The model enters by its
    identity (name, class, width), not by where its files are."""
    model = settings.get("model") or {}
    key = {k: settings.get(k) for k in ID_SETTINGS}
    key["model"] = {k: model.get(k) for k in ("name", "class", "d_model")}
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:32]


_OURS = re.compile(
    r"progress\.rank\d+\.json|\.(manifest\.json|shard-\d+\.safetensors|progress\.rank\d+\.json)\..*\.tmp"
)


def is_ours(name: str) -> bool:
    """A progress file, or a temp file a store writer leaves when killed (never a user's file)."""
    return _OURS.fullmatch(name) is not None


def remove_stray_temps(folder: Path) -> None:
    """Delete temp files left by a killed writer (they were never renamed, so nothing refers to them)."""
    for p in folder.glob(".*.tmp"):
        if is_ours(p.name) and not p.name.startswith("progress"):
            with contextlib.suppress(OSError):
                p.unlink()
