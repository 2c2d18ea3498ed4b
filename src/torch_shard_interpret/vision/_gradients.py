"""Gradient attributions to pixels: saliency, gradient x input, SmoothGrad and integrated gradients.

Integrated gradients (Sundararajan et al. 2017): ``IG = (x - x') * integral_0^1 grad f(x' + a (x - x')) da``
with Gauss-Legendre quadrature over ``steps`` points; completeness says ``sum(IG) = f(x) - f(x')``, and
``completeness_error`` is how far the quadrature is from it, per image. Baselines: ``"black"`` (zeros),
``"blur"`` (a Gaussian blur of the image), ``"noise"`` (uniform noise, seeded) or a tensor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from .._progress import progress as _progress
from ..core._errors import InputError
from ._common import as_model, check_images, input_grad, score, targets
from ._result import Attribution

if TYPE_CHECKING:
    from ..core._model import Model

BASELINES = ("black", "blur", "noise")


def _result(method, model, images, target, attributions, recompute, **extra) -> Attribution:
    return Attribution(
        method, attributions.detach(), images, target, model=model, recompute=recompute, **extra
    )


def saliency(
    model: Model | torch.nn.Module, images: torch.Tensor, target: Any = None, abs: bool = True
) -> Attribution:  # noqa: A002
    """``|d logit[target] / d pixel|`` (``abs=False``: the signed gradient)."""
    model, images = as_model(model), check_images(images)
    t = targets(model, images, target)

    def compute(m):
        g = input_grad(m, images, t)
        return g.abs() if abs else g

    return _result("saliency", model, images, t, compute(model), compute)


def gradient_x_input(model: Model | torch.nn.Module, images: torch.Tensor, target: Any = None) -> Attribution:
    """``x * d logit[target] / dx``."""
    model, images = as_model(model), check_images(images)
    t = targets(model, images, target)

    def compute(m):
        return input_grad(m, images, t) * images

    return _result("gradient_x_input", model, images, t, compute(model), compute)


def smoothgrad(
    model: Model | torch.nn.Module,
    images: torch.Tensor,
    target: Any = None,
    samples: int = 32,
    noise: float = 0.15,
    seed: int = 0,
) -> Attribution:
    """The mean gradient over ``samples`` noisy copies (noise sd = ``noise`` x the image's value range)."""
    model, images = as_model(model), check_images(images)
    t = targets(model, images, target)
    span = (images.amax((1, 2, 3)) - images.amin((1, 2, 3))).clamp_min(1e-6)[:, None, None, None]

    def compute(m):
        gen = torch.Generator(device=images.device).manual_seed(seed)
        total = torch.zeros_like(images)
        for _ in range(samples):
            eps = torch.randn(images.shape, generator=gen, device=images.device) * noise * span
            total += input_grad(m, images + eps, t)
        return total / samples

    return _result("smoothgrad", model, images, t, compute(model), compute, samples=samples, noise=noise)


def make_baseline(images: torch.Tensor, baseline: Any, seed: int = 0) -> torch.Tensor:
    """The IG baseline for ``images``: ``"black"``, ``"blur"``, ``"noise"`` or a tensor of the same shape."""
    if torch.is_tensor(baseline):
        return baseline.to(images).expand_as(images).detach()
    if baseline == "black":
        return torch.zeros_like(images)
    if baseline == "noise":
        gen = torch.Generator(device=images.device).manual_seed(seed)
        lo, hi = images.min(), images.max()
        return lo + (hi - lo) * torch.rand(images.shape, generator=gen, device=images.device)
    if baseline == "blur":
        sigma = max(images.shape[-1], images.shape[-2]) / 8.0
        radius = max(1, int(3 * sigma))
        k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=images.dtype) / sigma) ** 2)
        k = (k / k.sum()).to(images.device)
        c = images.shape[1]
        x = F.pad(images, (radius, radius, 0, 0), mode="replicate")
        x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
        x = F.pad(x, (0, 0, radius, radius), mode="replicate")
        return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    raise InputError(f"baseline must be one of {', '.join(BASELINES)} or a tensor, not {baseline!r}")


def integrated_gradients(
    model: Model | torch.nn.Module,
    images: torch.Tensor,
    target: Any = None,
    baseline: Any = "black",
    steps: int = 32,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
) -> Attribution:
    """Integrated gradients on pixels; ``.completeness_error`` ``[batch]`` = ``sum(IG) - (f(x) - f(x'))``."""
    if steps < 1:
        raise InputError(f"steps must be at least 1, not {steps}")
    model, images = as_model(model), check_images(images)
    t = targets(model, images, target)
    base = make_baseline(images, baseline, seed)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.tensor((nodes + 1) / 2, dtype=images.dtype, device=images.device)
    w = torch.tensor(weights / 2, dtype=images.dtype, device=images.device)
    per_chunk = max(1, batch_size // images.shape[0])

    def compute(m, bar=None):
        total = torch.zeros_like(images)
        for i in range(0, steps, per_chunk):
            a = alphas[i : i + per_chunk]
            x = base[None] + a[:, None, None, None, None] * (images - base)[None]  # [k, batch, C, H, W]
            g = input_grad(m, x.flatten(0, 1), t).unflatten(0, (len(a), images.shape[0]))
            total += (w[i : i + per_chunk, None, None, None, None] * g).sum(0)
            if bar is not None:
                bar.update(len(a))
        return total * (images - base)

    with _progress(total=steps, desc="integrated gradients", unit="step", enabled=progress) as bar:
        attr = compute(model, bar)
    with torch.no_grad():
        delta = score(model, images, t) - score(model, base, t)
    error = attr.sum((1, 2, 3)) - delta
    return _result(
        "integrated_gradients", model, images, t, attr, compute,
        baseline=baseline if isinstance(baseline, str) else "tensor", steps=steps,
        completeness_error=error.detach(), delta=delta.detach(),
    )  # fmt: skip
