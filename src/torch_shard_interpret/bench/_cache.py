"""The task cache: tensors as safetensors plus a JSON sidecar under ``$TSI_CACHE/bench/<name>/``.

Every task is seeded and deterministic, so its key (a name built from its arguments) decides its content;
a missing or unreadable entry is rebuilt. Writes go through ``_io`` so no reader ever sees half a file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_path, atomic_write
from ..loading._embedded import cache_root

FORMAT = 1


def task_dir(key: str) -> Path:
    return cache_root() / "bench" / f"{key}-v{FORMAT}"


def load_or_build(
    key: str, build: Callable[[], tuple[dict[str, torch.Tensor], dict[str, Any]]]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return ``(tensors, meta)`` from the cache, building and storing them with ``build()`` when absent."""
    from safetensors.torch import load_file, save_file

    folder = task_dir(key)
    meta_path, weights = folder / "meta.json", folder / "tensors.safetensors"
    if meta_path.is_file() and weights.is_file():
        try:
            return load_file(str(weights)), json.loads(meta_path.read_text())
        except (OSError, ValueError):
            pass  # a damaged entry is rebuilt below
    tensors, meta = build()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(weights) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        atomic_write(meta_path, json.dumps(meta, indent=1))
    except OSError:
        pass  # an unwritable cache only costs a rebuild next time
    return tensors, meta
