"""The buffer a shard is filled in before it is written, and the harvest's progress bar."""

from __future__ import annotations

from typing import Any

import torch

from .._progress import progress
from ._data import Source


class ShardBuffer:
    """Preallocated tensors of one shard, filled batch by batch. Owned by the harvest until handed to the
    writer, which only reads it; reused for a later shard once the writer gave it back."""

    def __init__(self, index: int, shard_rows: int, context: int, shapes: dict[str, tuple[int, ...]],
                 dtype: torch.dtype):  # fmt: skip
        n = shard_rows * context
        self.acts = {name: torch.empty((n, *shape), dtype=dtype) for name, shape in shapes.items()}
        self.tokens = torch.empty(n, dtype=torch.int32)
        self.reset(index)

    def reset(self, index: int) -> None:
        """Start shard ``index`` in this buffer (only once the writer is done with its previous shard)."""
        self.index = index
        self.n_rows = 0

    def add(self, ids: torch.Tensor, acts: dict[str, torch.Tensor]) -> None:
        a, b = self.n_rows, self.n_rows + ids.numel()
        for name, act in acts.items():  # [batch, pos, *shape] -> rows [batch * pos, *shape]
            self.acts[name][a:b].copy_(act.reshape(b - a, *act.shape[2:]))
        self.tokens[a:b].copy_(ids.reshape(-1))
        self.n_rows = b


def harvest_bar(enabled: bool, source: Source, context: int) -> Any:
    total = None
    shape = source.description.get("shape")
    if source.description.get("kind") == "tokens" and shape:
        total = shape[0] * context
    return progress(total, desc="harvest", unit="tok", enabled=enabled)
