"""The header of a safetensors file, read and checked without allocating any tensor.

A safetensors file is an 8-byte little-endian header length ``N``, ``N`` bytes of JSON
(``{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}``) and
the tensor bytes. ``read_header`` checks every entry against the file's real size, so that sizes taken from
the header (and compared with ``cfg.json``) are ones the file can back.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from ._config import SAEError

MAX_HEADER = 100 * 2**20
"""Largest header accepted (bytes); real SAE files have a few hundred bytes of header."""

DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
}
"""The floating dtypes an SAE tensor may have, with their sizes in bytes."""

_OTHER = {"I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL", "F8_E4M3", "F8_E5M2"}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it."""

    dtype: str
    """safetensors dtype name (``F32``, ``BF16``...)."""
    shape: tuple[int, ...]
    """Its shape."""


def read_header(path: Path) -> dict[str, TensorInfo]:
    """The tensors of the safetensors file ``path`` by name, checked against the file's size."""
    where = str(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise SAEError(f"{where} is not a safetensors file: it is only {size} bytes long")
            (n,) = struct.unpack("<Q", head)
            if n > min(MAX_HEADER, size - 8):
                raise SAEError(
                    f"{where} is not a safetensors file: its header claims {n} bytes but the file has "
                    f"{size - 8} after the length field"
                )
            text = f.read(n)
    except OSError as exc:
        raise SAEError(f"cannot read {where}: {exc.strerror or exc}") from None
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise SAEError(f"{where} is not a safetensors file: its header is not JSON") from None
    if not isinstance(header, dict):
        raise SAEError(f"{where} is not a safetensors file: its header is not a JSON object")
    data = size - 8 - n
    out: dict[str, TensorInfo] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        info, begin, end = _entry(where, name, entry, data)
        out[name] = info
        spans.append((begin, end, name))
    spans.sort()
    for (_, end_a, a), (begin_b, _, b) in zip(spans, spans[1:], strict=False):
        if begin_b < end_a:
            raise SAEError(f"{where} is damaged: the bytes of tensors {a!r} and {b!r} overlap")
    return out


def _entry(where: str, name: str, entry: object, data: int) -> tuple[TensorInfo, int, int]:
    bad = f"{where} is damaged: tensor {name!r}"
    if not isinstance(entry, dict):
        raise SAEError(f"{bad} has no dtype/shape/data_offsets record")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPES:
        what = "a floating dtype (F32, F16, BF16 or F64)"
        if dtype in _OTHER:
            raise SAEError(f"{bad} has dtype {dtype}, but SAE weights must have {what}")
        raise SAEError(f"{bad} has an unknown dtype {dtype!r}; expected {what}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise SAEError(f"{bad} has shape {shape!r}; a shape is a list of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_count(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise SAEError(f"{bad} has data_offsets {offsets!r}; expected [begin, end] with begin <= end")
    begin, end = offsets
    nbytes = math.prod(shape) * DTYPES[dtype][1]
    if end - begin != nbytes:
        raise SAEError(
            f"{bad} of shape {shape} and dtype {dtype} needs {nbytes} bytes, but its data_offsets span "
            f"{end - begin}"
        )
    if end > data:
        raise SAEError(f"{bad} ends at byte {end} of the data, but the file holds only {data} bytes of data")
    return TensorInfo(dtype, tuple(shape)), begin, end


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
