"""Checks of everything a store reader takes from disk: the manifest's structure and each shard's header.

Nothing read from a store is trusted before it is checked here:

- ``check_manifest``: the manifest is an object with the fields a reader uses, of the right types; every
  shard entry names its own file (``shard-00007.safetensors``, never a path elsewhere); the listed shards
  are numbered from 0 without a gap and their row ranges follow each other from row 0 and add up to
  ``n_rows``. It returns the shards a reader may use.
- ``check_header``: a shard file's safetensors header (only the header is read: a few kB) agrees with its
  manifest entry: the same store id, index, first sequence and context in its ``tsi`` metadata, exactly the
  manifest's sites plus ``tokens``, each with the manifest's dtype and ``[rows, *shape]``, and tensor data
  that fills the file. A shard copied in from another store is refused by its store id even when the
  manifest was edited to carry its sha256.

Every failure is a ``StoreCorruptError`` with one sentence naming the file.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

from ._errors import StoreCorruptError
from ._manifest import FORMAT, MANIFEST, STORE_DTYPES, TOKENS, shard_name

# safetensors' dtype names and item sizes, for the dtypes a store holds
_ST_DTYPES = {"float32": ("F32", 4), "bfloat16": ("BF16", 2), "float16": ("F16", 2)}
_TOKENS_DTYPE = ("I32", 4)
_MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ENTRY_INTS = ("index", "seq_start", "seq_stop", "row_start", "row_stop", "bytes")
_FIX = "re-harvest the store (tsi.store.harvest(..., overwrite=True)) or restore the folder from a copy"
_FIX_SHARD = "delete it and rerun tsi.store.harvest(..., resume=True) to rewrite it"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _bad_manifest(folder: Path, what: str) -> StoreCorruptError:
    return StoreCorruptError(f"{folder / MANIFEST} {what}; the manifest is damaged or was edited: {_FIX}")


def check_settings(folder: Path, m: dict[str, Any]) -> None:
    """The fields every reader uses, with their types (``dtype``, ``context``, ``sites``, ``shards``...)."""
    if not isinstance(m.get("complete"), bool):
        raise _bad_manifest(folder, "has no boolean 'complete'")
    if m.get("dtype") not in STORE_DTYPES:
        raise _bad_manifest(folder, f"has dtype {m.get('dtype')!r}, not one of {', '.join(STORE_DTYPES)}")
    if not _is_int(m.get("context")) or m["context"] < 1:
        raise _bad_manifest(folder, f"has context {m.get('context')!r}, not a positive integer")
    sites = m.get("sites")
    if not isinstance(sites, dict) or not sites or TOKENS in sites:
        raise _bad_manifest(folder, "has no 'sites' object naming the stored sites")
    for name, info in sites.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise _bad_manifest(folder, f"gives site {name!r} no shape (a list of sizes)")
    if not isinstance(m.get("shards"), list):
        raise _bad_manifest(folder, "has no 'shards' list")
    if "shard_rows" in m and (not _is_int(m["shard_rows"]) or m["shard_rows"] < 1):
        raise _bad_manifest(folder, f"has shard_rows {m['shard_rows']!r}, not a positive integer")
    if m.get("store_id") is not None and not isinstance(m["store_id"], str):
        raise _bad_manifest(folder, "has a store_id that is not a string")


def entry_problem(entry: Any, context: int, shard_rows: int | None) -> str | None:
    """Why one shard entry is malformed (``None`` when it is well formed), as the end of a sentence."""
    if not isinstance(entry, dict):
        return f"has a shard entry that is a {type(entry).__name__}, not an object"
    for key in _ENTRY_INTS:
        if not _is_int(entry.get(key)) or entry[key] < 0:
            return f"has a shard entry without a non-negative integer {key!r}"
    name = shard_name(entry["index"])
    if entry.get("file") != name:
        return f"lists shard {entry['index']} under the file name {entry.get('file')!r}, not {name!r}"
    if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
        return f"lists {name} without a sha256 (64 hex digits)"
    s0, s1, r0, r1 = entry["seq_start"], entry["seq_stop"], entry["row_start"], entry["row_stop"]
    if not s0 < s1 or (r0, r1) != (s0 * context, s1 * context):
        return (
            f"lists {name} with sequences [{s0}, {s1}) and rows [{r0}, {r1}), which do not agree "
            f"for {context} tokens per sequence"
        )
    if shard_rows is not None and (s0 != entry["index"] * shard_rows or s1 - s0 > shard_rows):
        return (
            f"lists {name} with sequences [{s0}, {s1}), but shard {entry['index']} of {shard_rows} "
            f"sequences per shard starts at sequence {entry['index'] * shard_rows}"
        )
    return None


def check_manifest(folder: Path, m: dict[str, Any]) -> list[dict[str, Any]]:
    """Check the manifest's structure; return the shards a reader may use, in order.

    A finished store must list shards ``0 .. n-1`` whose row ranges follow each other from row 0 and end at
    ``n_rows``. For an unfinished one, only the run of shards from shard 0 without a gap is returned.
    """
    check_settings(folder, m)
    context, shard_rows = m["context"], m.get("shard_rows")
    shards = m["shards"]
    for entry in shards:
        problem = entry_problem(entry, context, shard_rows)
        if problem:
            raise _bad_manifest(folder, problem)
    by_index: dict[int, dict[str, Any]] = {}
    for entry in shards:
        if entry["index"] in by_index:
            raise _bad_manifest(folder, f"lists {entry['file']} twice")
        by_index[entry["index"]] = entry
    use: list[dict[str, Any]] = []
    while len(use) in by_index:
        use.append(by_index[len(use)])
    complete = m["complete"]
    if complete and len(use) != len(by_index):
        gap = shard_name(len(use))
        raise _bad_manifest(
            folder, f"has no entry for {gap} although it lists shards after it (an entry was dropped)"
        )
    row = 0
    for entry in use:
        if entry["row_start"] != row:
            raise _bad_manifest(
                folder,
                f"lists {entry['file']} at rows [{entry['row_start']}, {entry['row_stop']}), but the "
                f"shards before it end at row {row} (rows would be lost or read twice)",
            )
        if complete and shard_rows is not None and entry is not use[-1]:
            if entry["seq_stop"] - entry["seq_start"] != shard_rows:
                raise _bad_manifest(
                    folder,
                    f"lists {entry['file']} with fewer than {shard_rows} sequences, but it is not the last",
                )
        row = entry["row_stop"]
    if complete:
        n_rows = m.get("n_rows")
        if not _is_int(n_rows) or n_rows != row:
            raise _bad_manifest(folder, f"says n_rows {n_rows!r}, but its shards hold {row} rows")
        n_seq = m.get("n_sequences")
        if n_seq is not None and n_seq * context != row:
            raise _bad_manifest(folder, f"says n_sequences {n_seq!r}, but its shards hold {row // context}")
    return use


# ---- shard headers ------------------------------------------------------------------------------
def read_header(file: Path, size: int) -> tuple[dict[str, Any], int]:
    """The JSON header of the safetensors file ``file`` (``size`` bytes) and the header's length."""
    try:
        with file.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise StoreCorruptError(
                    f"shard file {file} is too short to be a safetensors file; {_FIX_SHARD}"
                )
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, _MAX_HEADER):
                raise StoreCorruptError(
                    f"shard file {file} has a header length of {n} bytes that does not fit the file; {_FIX_SHARD}"
                )
            raw = f.read(n)
    except OSError as exc:
        raise StoreCorruptError(
            f"shard file {file} cannot be read ({exc.strerror or exc}); {_FIX_SHARD}"
        ) from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise StoreCorruptError(
            f"shard file {file} has a header that is not valid JSON; {_FIX_SHARD}"
        ) from None
    if not isinstance(header, dict):
        raise StoreCorruptError(f"shard file {file} has a header that is not a JSON object; {_FIX_SHARD}")
    return header, n


def check_header(folder: Path, m: dict[str, Any], entry: dict[str, Any]) -> None:
    """Check that shard ``entry``'s file header agrees with the manifest ``m`` (see the module docstring).

    The file's size must already be known to equal ``entry["bytes"]``."""
    file = folder / entry["file"]
    header, n = read_header(file, entry["bytes"])

    def bad(what: str) -> StoreCorruptError:
        return StoreCorruptError(f"shard file {file} {what}; {_FIX_SHARD}")

    meta = header.pop("__metadata__", None)
    try:
        info = json.loads(meta["tsi"]) if isinstance(meta, dict) else None
    except (KeyError, TypeError, ValueError):
        info = None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise bad("has no torch-shard-interpret metadata (it is not a shard of an activation store)")
    want_id = m.get("store_id")
    if info.get("store_id") != want_id:
        raise bad(
            f"belongs to another store (store id {info.get('store_id')!r}, this store's is {want_id!r})"
        )
    for key, want in (
        ("index", entry["index"]),
        ("seq_start", entry["seq_start"]),
        ("context", m["context"]),
    ):
        if info.get(key) != want:
            raise bad(f"says {key} {info.get(key)!r} where the manifest has {want!r}")
    rows = entry["row_stop"] - entry["row_start"]
    want_tensors = {name: (*_ST_DTYPES[m["dtype"]], [rows, *s["shape"]]) for name, s in m["sites"].items()}
    want_tensors[TOKENS] = (*_TOKENS_DTYPE, [rows])
    if set(header) != set(want_tensors):
        extra, missing = sorted(set(header) - set(want_tensors)), sorted(set(want_tensors) - set(header))
        raise bad(f"holds the tensors {sorted(header)}, not the manifest's {sorted(want_tensors)}"
                  + (f" (missing {missing})" if missing else "") + (f" (extra {extra})" if extra else ""))  # fmt: skip
    data_bytes = entry["bytes"] - 8 - n
    end_max = 0
    for name, (dtype, itemsize, shape) in want_tensors.items():
        t = header[name]
        if not isinstance(t, dict) or t.get("dtype") != dtype or t.get("shape") != shape:
            got = (t.get("dtype"), t.get("shape")) if isinstance(t, dict) else t
            raise bad(f"holds {name!r} as {got}, but the manifest says {dtype} {shape}")
        offsets = t.get("data_offsets")
        count = itemsize
        for d in shape:
            count *= d
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_bytes
            or offsets[1] - offsets[0] != count
        ):
            raise bad(f"has data offsets {offsets!r} for {name!r} that do not fit its shape or the file")
        end_max = max(end_max, offsets[1])
    if end_max != data_bytes:
        raise bad(f"has {data_bytes - end_max} bytes after its tensors (truncated or appended to)")
