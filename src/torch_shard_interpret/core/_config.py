# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""ModelConfig: the sizes of a model in the TransformerLens vocabulary (None where unknown)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ._adapter import DEFAULT_CONFIG, Adapter, find_module


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the wrapped model. Fields are None where the model does not say."""

    n_layers: int | None = None
    """Number of blocks."""
    d_model: int | None = None
    """Width of the residual stream."""
    n_heads: int | None = None
    """Attention heads per block."""
    d_head: int | None = None
    """Width of one head."""
    n_kv_heads: int | None = None
    """Key/value heads (grouped-query attention)."""
    d_mlp: int | None = None
    """MLP hidden width."""
    d_vocab: int | None = None
    """Vocabulary size."""
    n_ctx: int | None = None
    """Longest sequence the model accepts."""
    architecture: str | None = None
    """The adapter's name, or None when the model only has raw sites."""
    block_style: str | None = None
    """``sequential``, ``parallel`` or ``post_norm`` blocks."""


def make_config(module: nn.Module, adapter: Adapter | None) -> ModelConfig:
    """The sizes of ``module`` from its Hugging Face config (the names ``adapter`` gives), else its blocks."""
    hf = getattr(module, "config", None)
    hf = getattr(hf, "get_text_config", lambda: hf)() if hf is not None else None
    values: dict[str, Any] = {}
    names = {**DEFAULT_CONFIG, **(adapter.config if adapter is not None else {})}
    for key, attrs in names.items():
        for attr in attrs:
            val = getattr(hf, attr, None) if hf is not None else None
            if isinstance(val, int):
                values[key] = val
                break
    if adapter is not None:
        if "n_heads" not in values and getattr(adapter, "n_heads", None):
            values["n_heads"] = adapter.n_heads
        values["architecture"] = adapter.name
        values["block_style"] = adapter.block_style
        if "n_layers" not in values:
            found = find_module(module, adapter.blocks)
            if found is not None:
                values["n_layers"] = len(list(found[1].children()))
    if "d_head" not in values and values.get("d_model") and values.get("n_heads"):
        values["d_head"] = values["d_model"] // values["n_heads"]
    return ModelConfig(**values)
