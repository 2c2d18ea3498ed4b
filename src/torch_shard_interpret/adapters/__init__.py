"""Adapters: per-architecture maps from canonical site names to module paths.

Adapters only name things. The ``Adapter`` record and site building are the core's
(``core/_adapter.py``); the weights in head form are read by ``tsi.attribution.head_output_weights``.
"""

from ._base import Adapter as Adapter
from ._base import block_modules as block_modules
from ._base import build_sites as build_sites
from ._generic import generic_adapter as generic_adapter
from ._registry import adapter_for as adapter_for
from ._registry import register_adapter as register_adapter
from ._registry import registered as registered

__all__ = [
    "Adapter",
    "adapter_for",
    "block_modules",
    "build_sites",
    "generic_adapter",
    "register_adapter",
    "registered",
]
