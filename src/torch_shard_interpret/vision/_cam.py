"""Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018) at any convolutional site.

Grad-CAM: ``relu(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of ``d logit / d A_k``; the ReLU is
on, as in the paper (captum's ``LayerGradCam`` leaves it off unless ``relu_attributions=True``).
Grad-CAM++ weighs positive gradients by ``a = g^2 / (2 g^2 + sum(A) g^3)``, using the exponential-output
closed form of its paper. The map is upsampled bilinearly to the image size (``upsample=False``: the site's
own resolution). Activations and gradients come from the core's ``run(cache=, grad=)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..core._errors import InputError
from ..core._model import Model
from ._common import as_model, check_images, logits_of, targets
from ._result import Attribution


def _acts_grads(model: Model, images: torch.Tensor, t: torch.Tensor, site: str):
    def objective(r):
        logits = r.logits.reshape(r.logits.shape[0], -1)
        return logits.gather(1, t[:, None]).sum()

    run = model.run(images, cache=site, grad=objective)
    name = model.resolve(site)[0].name
    acts, grads = run.cache[name], run.grads[name]
    if acts.ndim != 4:
        raise InputError(
            f"Grad-CAM needs a convolutional site with [batch, channels, height, width] values; "
            f"{site!r} gives shape {tuple(acts.shape)}"
        )
    return acts, grads


def _cam(model, images, t, site, plus: bool, upsample: bool) -> torch.Tensor:
    acts, grads = _acts_grads(model, images, t, site)
    if plus:
        g2, g3 = grads.pow(2), grads.pow(3)
        denom = 2 * g2 + acts.sum((2, 3), keepdim=True) * g3
        a = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
        weights = (a * F.relu(grads)).sum((2, 3), keepdim=True)
    else:
        weights = grads.mean((2, 3), keepdim=True)
    cam = F.relu((weights * acts).sum(1))  # [batch, h, w]
    if upsample:
        cam = F.interpolate(cam[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam.detach()


def _make(
    method: str, plus: bool, model: Model | torch.nn.Module, images, target, site: str, upsample: bool
) -> Attribution:
    model, images = as_model(model), check_images(images)
    t = targets(model, images, target)

    def compute(m):
        return _cam(m, images, t, site, plus, upsample)

    return Attribution(method, compute(model), images, t, model=model, recompute=compute, site=site)


def grad_cam(
    model: Model | torch.nn.Module,
    images: torch.Tensor,
    target: Any = None,
    site: str = "stages.3",
    upsample: bool = True,
) -> Attribution:
    """Grad-CAM ``[batch, H, W]`` at ``site`` (canonical or raw, e.g. ``"layer4:output"``)."""
    return _make("grad_cam", False, model, images, target, site, upsample)


def grad_cam_pp(
    model: Model | torch.nn.Module,
    images: torch.Tensor,
    target: Any = None,
    site: str = "stages.3",
    upsample: bool = True,
) -> Attribution:
    """Grad-CAM++ ``[batch, H, W]`` at ``site``."""
    return _make("grad_cam_pp", True, model, images, target, site, upsample)


def occlusion(
    model: Model | torch.nn.Module,
    images: torch.Tensor,
    target: Any = None,
    window: int = 2,
    stride: int = 1,
    value: float = 0.0,
    batch_size: int = 256,
) -> Attribution:
    """Occlusion: each ``window`` x ``window`` patch (all channels) is set to ``value``; a pixel's attribution is
    the mean drop of the target logit over the patches that cover it. Occluded images run in batches."""
    model, images = as_model(model), check_images(images)
    t = targets(model, images, target)
    _, _, h, w = images.shape
    if window < 1 or stride < 1 or window > min(h, w):
        raise InputError(f"window must be 1..{min(h, w)} and stride at least 1, not {window} and {stride}")
    corners = [(i, j) for i in range(0, h - window + 1, stride) for j in range(0, w - window + 1, stride)]

    def compute(m):
        with torch.no_grad():
            base = logits_of(m, images).gather(1, t[:, None])[:, 0]  # [batch]
            total = torch.zeros(images.shape[0], h, w, dtype=images.dtype, device=images.device)
            count = torch.zeros(h, w, dtype=images.dtype, device=images.device)
            per = max(1, batch_size // images.shape[0])
            for s in range(0, len(corners), per):
                chunk = corners[s : s + per]
                x = images.unsqueeze(0).repeat(len(chunk), 1, 1, 1, 1)  # [k, batch, C, H, W]
                for k, (i, j) in enumerate(chunk):
                    x[k, :, :, i : i + window, j : j + window] = value
                out = logits_of(m, x.flatten(0, 1)).gather(1, t.repeat(len(chunk))[:, None])[:, 0]
                drop = base[None] - out.view(len(chunk), -1)  # [k, batch]
                for k, (i, j) in enumerate(chunk):
                    total[:, i : i + window, j : j + window] += drop[k][:, None, None]
                    count[i : i + window, j : j + window] += 1
        attr = total / count.clamp_min(1)
        return attr[:, None].expand(-1, images.shape[1], -1, -1).clone()

    return Attribution(
        "occlusion", compute(model), images, t, model=model, recompute=compute, window=window, stride=stride
    )
