"""The activation store format shared with ``tsi.store`` (framework-free: numpy, safetensors, json).

A store folder holds ``manifest.json`` (the only file a reader trusts, rewritten atomically) and
``shard-00000.safetensors`` ... : every site ``[rows, *shape]`` plus ``tokens`` ``[rows]`` (int32), one
metadata key ``tsi`` (JSON). Each shard entry records its rows, byte size and sha256. The manifest's
fields are written from data (``settings`` + the entries below) so new fields from the PyTorch writer
(for example a store id) are carried by adding them here, and readers ignore fields they do not know.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

FORMAT = "tsi-activation-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENS = "tokens"
DTYPES = ("float32", "float16")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, ``os.replace``: a reader sees the old file or the new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_bytes(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def shard_entry(index: int, file: str, seq0: int, seq1: int, context: int, blob: bytes) -> dict[str, Any]:
    return {"index": index, "file": file, "seq_start": seq0, "seq_stop": seq1, "row_start": seq0 * context,
            "row_stop": seq1 * context, "bytes": len(blob), "sha256": sha256_bytes(blob)}  # fmt: skip


def manifest(
    settings: dict[str, Any], shards: list[dict[str, Any]], complete: bool, writer: str, **extra: Any
) -> dict[str, Any]:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "complete": complete, **settings, **extra,
            "world_size": 1, "writer": writer, "shards": sorted(shards, key=lambda s: s["index"])}  # fmt: skip


def write_json(path: Path, obj: dict[str, Any]) -> None:
    atomic_write(path, (json.dumps(obj, indent=1) + "\n").encode("utf-8"))
