"""Which adapter fits a model: by ``config.model_type``, else the generic fallback."""

from __future__ import annotations

from torch import nn

from ._base import Adapter
from .gpt2 import GPT2
from .llama import LLAMA

_ADAPTERS: dict[str, Adapter] = {}


def register_adapter(adapter: Adapter) -> Adapter:
    """Make ``adapter`` the one used for each of its ``model_types``."""
    for model_type in adapter.model_types:
        _ADAPTERS[model_type] = adapter
    return adapter


for _a in (LLAMA, GPT2):
    register_adapter(_a)


def registered() -> dict[str, Adapter]:
    return dict(_ADAPTERS)


def adapter_for(module: nn.Module) -> Adapter | None:
    """The adapter for ``module``: registered by model type, else a generic one found by structure, else None."""
    model_type = getattr(getattr(module, "config", None), "model_type", None)
    if model_type in _ADAPTERS:
        return _ADAPTERS[model_type]
    from ._generic import generic_adapter

    return generic_adapter(module)
