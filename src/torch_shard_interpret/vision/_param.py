"""Image parameterisations and transformation robustness for feature visualisation (after Lucid/lucent).

- ``pixel``: the image is ``sigmoid(p)`` of a free tensor.
- ``fft``: the image is the inverse real FFT of a spectrum scaled by ``1 / max(f, 1 / max(h, w)) ** decay``
  (1/f: natural images' spectrum, so low frequencies move first), divided by 4, then ``sigmoid``.
- ``decorrelate`` (3 channels): the channels are mixed by a square root ``M`` of natural images' colour
  covariance (``M @ M.T`` is proportional to it) before the sigmoid, so the optimisation works in
  decorrelated colour space. ``M`` is our own, measured on the two photos in scikit-learn's wheel
  (``china.jpg``, ``flower.jpg``; ``colour_sqrt``): eigenvectors scaled by the root of their eigenvalue,
  largest first, normalised by the longest column. Its first column is the luminance direction.

``transforms``: ``pad`` (constant 0.5), random ``jitter`` (crop shift), random ``scale`` and ``rotate``
(one affine resample), a second small jitter, then a resize back to the input size (so fixed-size models
such as a ViT accept it). All randomness comes from one ``torch.Generator``, so a seed fixes everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core._errors import InputError

# colour_sqrt of scikit-learn's two sample photos (546,560 pixels), rounded; tests/vision check it is so
_COLOR = torch.tensor([[0.6359, 0.2378, -0.0188], [0.5373, -0.0667, 0.0664], [0.5540, -0.2083, -0.0428]])


def colour_sqrt(pixels: torch.Tensor) -> torch.Tensor:
    """``M`` ``[3, 3]`` with ``M @ M.T`` proportional to the covariance of ``pixels`` ``[n, 3]``: its columns are
    the covariance's eigenvectors (largest eigenvalue first, each signed so its largest entry is positive)
    scaled by the root of their eigenvalue, and the longest column has norm 1."""
    x = pixels.double()
    cov = torch.cov(x.T)
    values, vectors = torch.linalg.eigh(cov)
    values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)
    signs = vectors.gather(0, vectors.abs().argmax(0, keepdim=True)).sign()
    m = vectors * signs * values.sqrt()
    return (m / m.norm(dim=0).max()).float()


class ImageParam(torch.nn.Module):
    """Learnable images ``[batch, C, H, W]`` in ``[0, 1]``."""

    def __init__(
        self, shape, param: str = "fft", decorrelate: bool = True, decay: float = 1.0, gen=None, sd=0.01
    ):
        super().__init__()
        b, c, h, w = shape
        self.shape, self.kind = (b, c, h, w), param
        self.decorrelate = decorrelate and c == 3
        if param == "fft":
            fy = torch.fft.fftfreq(h)[:, None]
            fx = torch.fft.rfftfreq(w)[None, :]
            freq = (fx**2 + fy**2).sqrt()
            self.register_buffer("scale", 1.0 / freq.clamp_min(1.0 / max(h, w)) ** decay)
            self.spectrum = torch.nn.Parameter(sd * torch.randn((b, c, h, w // 2 + 1, 2), generator=gen))
        elif param == "pixel":
            self.pixels = torch.nn.Parameter(sd * torch.randn((b, c, h, w), generator=gen))
        else:
            raise InputError(f"param must be 'fft' or 'pixel', not {param!r}")

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.linear())

    def linear(self) -> torch.Tensor:
        """The images before the sigmoid (after the inverse FFT and the colour mixing)."""
        b, c, h, w = self.shape
        if self.kind == "fft":
            scale: torch.Tensor = self.scale  # type: ignore[assignment]
            spec = torch.view_as_complex(self.spectrum) * scale
            x = torch.fft.irfft2(spec, s=(h, w), norm="ortho") / 4.0
        else:
            x = self.pixels
        if self.decorrelate:
            x = torch.einsum("bchw,dc->bdhw", x, _COLOR.to(x))
        return x


@dataclass(frozen=True)
class Transforms:
    """Transformation robustness; sizes in pixels. ``Transforms.standard(size)`` scales lucent's defaults
    (pad 12, jitter 8, scale 0.9-1.1, rotate +-10 degrees, jitter 4, for 224-pixel images) to ``size``."""

    pad: int = 12
    jitter: int = 8
    scales: tuple[float, ...] = tuple(1 + (i - 5) / 50 for i in range(11))
    degrees: float = 10.0
    jitter2: int = 4

    @staticmethod
    def standard(size: int) -> Transforms:
        k = size / 224
        return Transforms(max(1, round(12 * k)), max(1, round(8 * k)), Transforms.scales, 10.0, round(4 * k))

    @staticmethod
    def none() -> Transforms:
        return Transforms(0, 0, (1.0,), 0.0, 0)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        size = x.shape[-2:]
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, value=0.5)
        x = _jitter(x, self.jitter, gen)
        scale = self.scales[int(torch.randint(len(self.scales), (1,), generator=gen))]
        angle = math.radians(float(torch.empty(1).uniform_(-self.degrees, self.degrees, generator=gen)))
        if scale != 1.0 or angle != 0.0:
            cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
            theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
            grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
        x = _jitter(x, self.jitter2, gen)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x


def _jitter(x: torch.Tensor, d: int, gen: torch.Generator) -> torch.Tensor:
    if d <= 0 or min(x.shape[-2:]) <= d:
        return x
    dy, dx = (int(v) for v in torch.randint(d + 1, (2,), generator=gen))
    h, w = x.shape[-2:]
    return x[..., dy : h - d + dy, dx : w - d + dx]
