"""Weights in head-by-head form, read from the user's own modules (never copied into a new model)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..core._errors import AdapterError

if TYPE_CHECKING:
    from ..core._model import Model


def _is_conv1d(module: nn.Module) -> bool:
    """GPT-2 style ``Conv1D``: a linear layer whose weight is stored ``[in, out]``."""
    return type(module).__name__ == "Conv1D" or (hasattr(module, "nf") and hasattr(module, "nx"))


def linear_weight_in_out(module: nn.Module) -> torch.Tensor:
    """The weight of a linear-like module as ``[in_features, out_features]`` (a view, not a copy)."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise AdapterError(f"{type(module).__name__} has no 2-d weight; cannot read it as a linear map")
    return weight if _is_conv1d(module) else weight.T


def head_output_weights(model: Model | nn.Module, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(W_O, b_O)`` of block ``layer``'s attention output projection.

    ``W_O`` is ``[n_heads, d_head, d_model]``: head ``h`` writes ``z[..., h, :] @ W_O[h]`` into the
    projection's output, and the sum over heads plus ``b_O`` (``[d_model]`` or None) is that output.
    ``model`` is a ``tsi.Model`` (or a module, wrapped on the fly). The tensors are views of the live
    parameters: they follow later weight changes and carry gradients.
    """
    if isinstance(model, nn.Module):
        from .._wrap import wrap

        model = wrap(model)
    o_proj = model.block_modules(layer)["o_proj"]
    if o_proj is None:
        raise AdapterError(f"this model's adapter names no attention output projection in block {layer}")
    site = model.site(f"blocks.{layer}.attn.z")
    n_heads = site.n_heads or model.cfg.n_heads
    if not n_heads:
        raise AdapterError("the number of attention heads is unknown for this model")
    weight = linear_weight_in_out(o_proj)
    w_o = weight.reshape(n_heads, weight.shape[0] // n_heads, weight.shape[1])
    bias = getattr(o_proj, "bias", None)
    return w_o, bias if isinstance(bias, torch.Tensor) else None
