"""Tensor-parallel activations: show intervention code the full tensor, hand the model back a DTensor.

A module run under ``torch.distributed.tensor.parallel`` may see DTensor inputs (e.g. the input of a
row-wise parallel output projection is sharded over heads). Hooks gather such a value to a full tensor
(the same on every rank), and redistribute the changed value with the original placements.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def is_dtensor(value: torch.Tensor) -> bool:
    return type(value).__name__ == "DTensor"


def unshard(value: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``(full_tensor, restore)`` where ``restore(new_full)`` gives a DTensor laid out like ``value``."""
    from torch.distributed.tensor import distribute_tensor

    mesh, placements = value.device_mesh, value.placements
    full = value.full_tensor()

    def restore(new: torch.Tensor) -> torch.Tensor:
        # Every rank holds the same full value, so each can take its own shard without communication.
        return distribute_tensor(new, mesh, placements, src_data_rank=None)

    return full, restore
