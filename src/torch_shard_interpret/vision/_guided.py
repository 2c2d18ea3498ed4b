"""Guided backpropagation (Springenberg et al. 2015) that also sees functional ReLUs.

Backward through every ReLU passes only positive gradients at positive inputs. Hook-based versions (captum's
``GuidedBackprop``) override ``nn.ReLU`` modules only, so a model that calls ``F.relu``/``torch.relu``/
``x.relu()`` in its forward silently gets plain gradients. In-place forms (``x.relu_()``, ``F.relu(x, inplace=True)``)
write the guided result back into ``x``, so they work as statements too. Here every ReLU call is caught while the forward
runs by a ``TorchFunctionMode`` scoped to this one call (``nn.ReLU`` calls ``F.relu`` too), and replaced by
a ReLU with the guided backward; nothing of the model is changed and nothing stays installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ._common import as_model, check_images, score, targets
from ._result import Attribution

if TYPE_CHECKING:
    from ..core._model import Model


class _GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = x.clamp_min(0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad.clamp_min(0) * (out > 0).to(grad.dtype)


_RELUS = {F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
_IN_PLACE = {torch.relu_, torch.Tensor.relu_}
if hasattr(F, "relu_"):
    _RELUS.add(F.relu_)
    _IN_PLACE.add(F.relu_)


class GuidedReLUs(TorchFunctionMode):
    """Inside this mode every ReLU call (module or functional) has the guided backward."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELUS:
            self.calls += 1
            x = args[0]
            out = _GuidedReLU.apply(x)
            in_place = func in _IN_PLACE or kwargs.get("inplace", len(args) > 1 and args[1]) is True
            if (
                in_place
            ):  # x.relu_() used as a statement: x itself must hold the result, through the guided op
                x.copy_(out)
                return x
            return out
        return func(*args, **kwargs)


def guided_backprop(model: Model | torch.nn.Module, images: torch.Tensor, target: Any = None) -> Attribution:
    """Guided-backprop gradients ``[batch, C, H, W]``; ``.relu_calls`` counts the ReLUs it guided."""
    model, images = as_model(model), check_images(images)
    t = targets(model, images, target)
    calls = [0]

    def compute(m):
        with torch.enable_grad():
            x = images.detach().requires_grad_(True)
            mode = GuidedReLUs()
            with mode:
                out = score(m, x, t).sum()
            calls[0] = mode.calls
            (g,) = torch.autograd.grad(out, x)
        return g

    attr = compute(model)
    return Attribution(
        "guided_backprop", attr, images, t, model=model, recompute=compute, relu_calls=calls[0]
    )
