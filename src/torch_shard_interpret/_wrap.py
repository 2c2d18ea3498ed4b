"""``tsi.wrap``: the user's module plus the adapter that names its sites.

The core's ``Model`` takes an explicit ``Adapter`` (or None); choosing one automatically (by
``config.model_type``, else by structure) needs the adapter registry, so it sits here, one level above
the core.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import nn

from .adapters._registry import adapter_for
from .core._adapter import Adapter
from .core._model import Model


def wrap(
    module: nn.Module, tokenizer: Any = None, adapter: Adapter | Literal["auto"] | None = "auto"
) -> Model:
    """Wrap any ``nn.Module`` without changing it. ``adapter="auto"`` picks one by architecture (Hugging Face
    models) or by structure; ``adapter=None`` keeps raw sites only; an ``Adapter`` is used as given."""
    if isinstance(adapter, str) and adapter == "auto":
        adapter = adapter_for(module) if isinstance(module, nn.Module) else None
    return Model(module, tokenizer=tokenizer, adapter=adapter)
