# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""ModelConfig: the sizes of a model in the TransformerLens vocabulary (None where unknown)."""

from __future__ import annotations

from dataclasses import dataclass


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
