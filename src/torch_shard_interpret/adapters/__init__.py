"""Adapters: per-architecture maps from canonical site names to module paths."""

from ._base import Adapter as Adapter
from ._base import block_modules as block_modules
from ._base import build_sites as build_sites
from ._generic import generic_adapter as generic_adapter
from ._registry import adapter_for as adapter_for
from ._registry import register_adapter as register_adapter
from ._registry import registered as registered
from ._weights import head_output_weights as head_output_weights

__all__ = [
    "Adapter",
    "adapter_for",
    "block_modules",
    "build_sites",
    "generic_adapter",
    "head_output_weights",
    "register_adapter",
    "registered",
]
