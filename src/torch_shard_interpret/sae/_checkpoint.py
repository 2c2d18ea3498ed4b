"""Resumable training checkpoints without pickles: one safetensors file of tensors plus one JSON file.

A training state is a nested structure of dicts (string keys), lists, JSON scalars and tensors: SAE
parameters, Adam's moment tensors, RNG states (uint8 tensors), step counters, normalisation scales, the
configuration and the optimiser's hyper-parameters. ``write`` moves every tensor into
``checkpoint-<step>-<random>.safetensors`` and leaves ``{"__tensor__": name}`` in its place; the rest goes
to ``checkpoint.json``, which also names the tensor file and holds its sha256:

    checkpoint.json                      {"format", "step", "tensors", "sha256", "state"}
    checkpoint-000120-1a2b3c.safetensors the tensors, by path ("trainers/0/sae/W_enc", ...)

Both are written atomically, the tensor file first (flushed to disk), then ``checkpoint.json``, whose rename
is the commit: an interrupted write leaves the previous pair in force. Older tensor files are removed after
the commit. ``read`` parses only JSON and safetensors, so nothing in the folder can run code, and any
damage (bad JSON, a missing or truncated tensor file, a wrong checksum) raises ``SAEError`` naming the file.
The pickle files of earlier versions (``checkpoint.pt``) are refused, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write
from ._config import SAEError

STATE_FILE = "checkpoint.json"
LEGACY_FILE = "checkpoint.pt"
FORMAT = "tsi-sae-checkpoint/1"
_TENSOR_NAME = re.compile(r"checkpoint-\d+-[0-9a-f]+\.safetensors")
_MARK = "__tensor__"


class CheckpointError(SAEError):
    """A checkpoint folder holds a damaged, foreign or legacy (pickle) checkpoint."""


def exists(folder: Path) -> bool:
    """True when ``folder`` holds a checkpoint that ``read`` would try (not a legacy one)."""
    return (folder / STATE_FILE).is_file()


def refuse_legacy(folder: Path) -> None:
    """Raise when ``folder`` holds only a ``checkpoint.pt`` of an earlier version (a pickle: never read)."""
    legacy = folder / LEGACY_FILE
    if legacy.exists() and not exists(folder):
        raise CheckpointError(
            f"{legacy} is a checkpoint in the old pickle format, which tsi does not read because loading it "
            "could run code; delete it (or choose another checkpoint folder) and train with resume=False"
        )


# ---- flattening: tensors out of the structure, markers in -------------------------------------------------
def _flatten(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if torch.is_tensor(obj):
        tensors[path] = obj.detach().cpu().contiguous().clone()
        return {_MARK: path}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"checkpoint state at {path or '/'} has non-string keys")
        return {k: _flatten(v, f"{path}/{k}" if path else k, tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint state at {path} is a {type(obj).__name__}, not a tensor or JSON value")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_MARK}:
            return tensors[obj[_MARK]]  # KeyError: the tensor file lacks it (reported as damage)
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


# ---- write and read ---------------------------------------------------------------------------------------
def write(folder: Path, step: int, state: dict[str, Any]) -> None:
    """Write ``state`` (see the module docstring) as the checkpoint of ``step`` in ``folder``, atomically."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    meta = _flatten(state, "", tensors)
    data = save(tensors)
    name = f"checkpoint-{step:09d}-{secrets.token_hex(4)}.safetensors"
    record = {
        "format": FORMAT,
        "step": step,
        "tensors": name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "state": meta,
    }
    atomic_write(folder / name, data, mkdir=True, fsync=True)
    atomic_write(folder / STATE_FILE, json.dumps(record) + "\n", fsync=True)
    for old in folder.glob("checkpoint-*.safetensors"):
        if old.name != name and _TENSOR_NAME.fullmatch(old.name):
            old.unlink(missing_ok=True)


def _damaged(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"the checkpoint {path} cannot be read ({why}); delete the checkpoint files in {path.parent} "
        "(or choose another checkpoint folder) and train with resume=False"
    )


def read(folder: Path) -> tuple[int, dict[str, Any]]:
    """``(step, state)`` of the checkpoint in ``folder``; ``CheckpointError`` naming the file when damaged."""
    from safetensors.torch import load

    record_path = folder / STATE_FILE
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _damaged(record_path, f"not valid JSON: {type(exc).__name__}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise _damaged(record_path, f"not a {FORMAT} record")
    name, step, digest = record.get("tensors"), record.get("step"), record.get("sha256")
    if not isinstance(name, str) or not _TENSOR_NAME.fullmatch(name):
        raise _damaged(record_path, "it names no valid tensor file")
    if not isinstance(step, int) or step < 0 or not isinstance(record.get("state"), dict):
        raise _damaged(record_path, "its step or state is missing")
    tensor_path = folder / name
    try:
        data = tensor_path.read_bytes()
    except OSError:
        raise _damaged(tensor_path, "the file is missing") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise _damaged(tensor_path, "its sha256 differs from the one recorded in checkpoint.json")
    try:
        tensors = load(data)
        state = _unflatten(record["state"], tensors)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise _damaged(tensor_path, f"{type(exc).__name__}") from None
    return step, state


def damaged(folder: Path, why: str) -> CheckpointError:
    """The error for a checkpoint whose files parse but whose contents do not fit the run."""
    return _damaged(folder / STATE_FILE, why)
