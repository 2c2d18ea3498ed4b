"""Adapters: per-architecture maps from canonical site names to module paths."""

from ._base import Adapter as Adapter
from ._base import block_modules as block_modules
from ._base import build_sites as build_sites
from ._registry import adapter_for as adapter_for
from ._registry import register_adapter as register_adapter
from ._registry import registered as registered

__all__ = ["Adapter", "adapter_for", "block_modules", "build_sites", "register_adapter", "registered"]
