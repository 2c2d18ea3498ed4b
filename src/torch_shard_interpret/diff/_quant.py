"""A locally quantised copy of a model: weights rounded to int8 (or fewer bits) and back, in torch.

Every ``nn.Linear`` and ``nn.Embedding`` weight is rounded per output row with a symmetric scale
``max|w| / (2**(bits-1) - 1)``; the copy computes in the original dtype ("fake quantisation"), so it runs
anywhere the original runs and differs from it exactly by the rounding.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .._wrap import wrap
from ..core._model import Model
from ._pairs import DiffError


@torch.no_grad()
def quantized_copy(model: Model, bits: int = 8) -> Model:
    """A new ``tsi.Model`` whose module is a deep copy of ``model.module`` with rounded weights."""
    if not 2 <= bits <= 16:
        raise DiffError(f"bits must be between 2 and 16, not {bits}")
    module = copy.deepcopy(model.module)
    qmax = 2 ** (bits - 1) - 1
    seen: set[int] = set()
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Embedding)) and id(sub.weight) not in seen:
            seen.add(id(sub.weight))  # tied weights are rounded once
            w = sub.weight
            scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / qmax
            w.copy_((w / scale).round().clamp(-qmax, qmax) * scale)
    return wrap(module, tokenizer=model.tokenizer)
