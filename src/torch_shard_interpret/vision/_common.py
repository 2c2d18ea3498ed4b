"""What every pixel-attribution method shares: checked images, targets and the target score."""

from __future__ import annotations

from typing import Any

import torch

from ..core._errors import InputError
from ..core._model import Model
from ._sites import wrap


def as_model(model: Model | torch.nn.Module) -> Model:
    """A ``tsi.Model`` (an ``nn.Module`` is wrapped with its vision sites)."""
    return model if isinstance(model, Model) else wrap(model)


def check_images(images: Any) -> torch.Tensor:
    """``images`` as a float ``[batch, C, H, W]`` tensor (one ``[C, H, W]`` image gets a batch dim)."""
    if not torch.is_tensor(images) or not images.is_floating_point():
        raise InputError(
            "images must be a float tensor [batch, C, H, W]; convert with torch.as_tensor(x).float()"
        )
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[0] == 0:
        raise InputError(f"images must be [batch, C, H, W], not shape {tuple(images.shape)}")
    return images.detach()


def logits_of(model: Model, x: torch.Tensor) -> torch.Tensor:
    """``[batch, n_classes]`` from the model's own forward."""
    out = model.module(x)
    out = out if torch.is_tensor(out) else getattr(out, "logits", out[0])
    return out.reshape(out.shape[0], -1)


def targets(model: Model, images: torch.Tensor, target: Any) -> torch.Tensor:
    """``[batch]`` class indices: ``target`` (int, list or tensor) or, when None, the predicted classes."""
    if target is None:
        with torch.no_grad():
            return logits_of(model, images).argmax(-1)
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    if t.numel() == 1:
        t = t.expand(images.shape[0])
    if t.numel() != images.shape[0]:
        raise InputError(
            f"target has {t.numel()} entries for {images.shape[0]} images; give one per image or one for all"
        )
    return t.to(images.device)


def score(model: Model, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[batch]`` the target logit of each image; ``target`` repeats when ``x`` stacks several copies."""
    logits = logits_of(model, x)
    reps = x.shape[0] // target.shape[0]
    return logits.gather(1, target.repeat(reps)[:, None])[:, 0]


def input_grad(model: Model, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``d score / d x`` for a batch ``x`` ``[n, C, H, W]``."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(score(model, x, target).sum(), x)
    return g
