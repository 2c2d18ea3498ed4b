"""Checkerboard diagnosis (Odena, Dumoulin and Olah 2016, "Deconvolution and Checkerboard Artifacts").

For every transposed convolution and every strided convolution of a module:

- ``overlap``: the coverage map implied by kernel size and stride alone — a transposed conv of an all-ones
  input with an all-ones kernel (for a strided conv: its backward, which is that transposed conv). Its
  coefficient of variation ``overlap_cv`` (interior, borders cropped) is 0 exactly when every output pixel
  is painted the same number of times, i.e. when the kernel size is divisible by the stride.
- ``spectral``: the measured share of spectral energy at the stride frequencies (``k * N / s`` per axis,
  DC excluded), divided by the share a flat spectrum would have there (1.0 = no excess). It is taken on the
  per-pixel energy ``E[y^2]`` of the layer's output over random inputs (``"output"``), and on that of the
  gradient at the layer's input for random output directions (``"input_grad"``), with the trained weights.

A layer is flagged when its overlap is uneven and a measured ratio exceeds ``threshold`` (the measurement
confirms the arithmetic; an uneven layer whose weights learned to compensate is not flagged), or when a
measured ratio exceeds ``strong`` whatever the overlap (learned weights can paint a checkerboard even with a
divisible kernel). On the ground truth (``_generators.py``; three training seeds) the k3/s2 decoder measures
58-66 and the k4/s2 one 5-19. The fix named is a resize-convolution (upsample, then a stride-1 conv) or a
kernel size divisible by the stride.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._render import esc, fmt, img_tag
from ..core._errors import InputError
from ..core._model import Model
from ._sites import wrap

THRESHOLD = 4.0
STRONG = 40.0


@dataclass
class CheckerboardLayer:
    """One transposed or strided convolution and its diagnosis."""

    name: str
    kind: str  # "conv_transpose" or "strided_conv"
    kernel: tuple[int, int]
    stride: tuple[int, int]
    overlap: torch.Tensor  # [h, w] coverage counts, interior
    overlap_cv: float
    spectral: dict[str, float]
    flagged: bool
    fix: str | None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            "overlap": self.overlap.tolist(),
            "overlap_cv": self.overlap_cv,
            "spectral": dict(self.spectral),
            "flagged": self.flagged,
            "fix": self.fix,
        }


@dataclass
class CheckerboardResult:
    """``layers``: one row per transposed or strided convolution, in module order."""

    layers: list[CheckerboardLayer]
    input_shape: tuple[int, ...]
    threshold: float = THRESHOLD
    notes: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> list[str]:
        """Names of the flagged layers."""
        return [row.name for row in self.layers if row.flagged]

    def to_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "threshold": self.threshold,
            "layers": [row.to_dict() for row in self.layers],
            "flagged": self.flagged,
        }

    def to_html(self) -> str:
        if not self.layers:
            return "<p>No transposed or strided convolution: nothing can paint a checkerboard.</p>"
        rows = []
        for r in self.layers:
            cells = [r.name, r.kind, f"{r.kernel[0]}x{r.kernel[1]}", f"{r.stride[0]}x{r.stride[1]}",
                     fmt(r.overlap_cv), fmt(r.spectral["output"]), fmt(r.spectral["input_grad"]),
                     "yes" if r.flagged else "no", r.fix or ""]  # fmt: skip
            rows.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
        head = ["layer", "kind", "kernel", "stride", "overlap CV", "spectral (output)",
                "spectral (input grad)", "flagged", "fix"]  # fmt: skip
        maps = "".join(
            f"<figure>{img_tag(_grey(r.overlap), width=96, title=f'{r.name}: overlap')}"
            f"<figcaption>{esc(r.name)}: overlap</figcaption></figure>"
            for r in self.layers
        )
        return (
            "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>" + "".join(rows)
            + f"</table><div>{maps}</div>"
        )  # fmt: skip


def _grey(a: torch.Tensor):
    a = a.double()
    return ((a - a.min()) / (a.max() - a.min()).clamp_min(1e-12)).numpy() if a.numel() else a.numpy()


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def overlap_map(
    kernel: tuple[int, int], stride: tuple[int, int], size: tuple[int, int] = (8, 8)
) -> torch.Tensor:
    """How many kernel taps paint each pixel of a transposed conv (all-ones input and kernel), borders cropped."""
    ones = torch.ones(1, 1, *size, dtype=torch.float64)
    out = F.conv_transpose2d(ones, torch.ones(1, 1, *kernel, dtype=torch.float64), stride=stride)[0, 0]
    kh, kw = kernel
    return out[kh : out.shape[0] - kh, kw : out.shape[1] - kw]


def stride_share(energy: torch.Tensor, stride: tuple[int, int]) -> float:
    """Share of the (DC-free) power of ``energy`` ``[H, W]`` at the stride frequencies, over a flat share."""
    h, w = energy.shape
    power = torch.fft.fft2(energy - energy.mean()).abs().pow(2)
    mask = torch.zeros(h, w, dtype=torch.bool)
    sh, sw = stride
    rows = [k * h // sh for k in range(sh)] if h % sh == 0 else [0]
    cols = [k * w // sw for k in range(sw)] if w % sw == 0 else [0]
    for r in rows:
        for c in cols:
            mask[r, c] = True
    mask[0, 0] = False
    total = power.sum() - power[0, 0]
    if int(mask.sum()) == 0 or float(total) <= 0:
        return 0.0
    return float(power[mask].sum() / total) / (int(mask.sum()) / (h * w - 1))


def _candidates(module: nn.Module) -> list[tuple[str, nn.Module, str]]:
    out = []
    for path, m in module.named_modules():
        if isinstance(m, nn.ConvTranspose2d) and max(_pair(m.stride)) > 1:
            out.append((path, m, "conv_transpose"))
        elif isinstance(m, nn.Conv2d) and max(_pair(m.stride)) > 1:
            out.append((path, m, "strided_conv"))
    return out


def checkerboard(
    module: Any,
    input_shape: tuple[int, ...] = (1, 16, 8, 8),
    samples: int = 16,
    seed: int = 0,
    threshold: float = THRESHOLD,
    strong: float = STRONG,
    inputs: torch.Tensor | None = None,
) -> CheckerboardResult:
    """Diagnose every transposed and strided convolution of ``module`` (an ``nn.Module`` or ``tsi.Model``) for
    checkerboard artifacts, on ``samples`` standard-normal inputs of ``input_shape``, or on ``inputs`` (real
    data, e.g. a generator's codes of real images) when given. See the module docstring."""
    model = module if isinstance(module, Model) else wrap(module)
    if inputs is not None:
        if not torch.is_tensor(inputs) or inputs.ndim != 4 or not inputs.is_floating_point():
            raise InputError("inputs must be a float tensor [batch, channels, height, width]")
        input_shape = (1, *inputs.shape[1:])
    if len(input_shape) != 4:
        raise InputError(f"input_shape must be (batch, channels, height, width), not {tuple(input_shape)}")
    layers = _candidates(model.module)
    if not layers:
        return CheckerboardResult([], tuple(input_shape), threshold)
    gen = torch.Generator().manual_seed(seed)
    p = next(iter(model.module.parameters()), None)
    dtype = p.dtype if p is not None else torch.float32
    device = p.device if p is not None else torch.device("cpu")
    if inputs is None:
        x = torch.randn((samples, *input_shape[1:]), generator=gen, dtype=dtype).to(device)
    else:
        x = inputs.detach().to(device=device, dtype=dtype)
    with torch.no_grad():
        out = model.module(x)
    direction = torch.randn(out.shape, generator=gen, dtype=dtype).to(device)
    names = [f"{path}:output" for path, _, _ in layers] + [f"{path}:input" for path, _, _ in layers]

    def objective(r: Any) -> torch.Tensor:
        return (r.logits * direction).sum()

    run = model.run(x, cache=names, grad=objective)
    rows = []
    for path, m, kind in layers:
        k, s = _pair(m.kernel_size), _pair(m.stride)
        overlap = overlap_map(k, s)
        cv = float(overlap.std(unbiased=False) / overlap.mean()) if overlap.numel() else 0.0
        y, g = run.cache[f"{path}:output"], run.grads[f"{path}:input"]
        spectral = {
            "output": stride_share(y.detach().double().pow(2).mean((0, 1)).cpu(), s),
            "input_grad": stride_share(g.double().pow(2).mean((0, 1)).cpu(), s),
        }
        uneven = cv > 1e-9
        peak = max(spectral.values())
        flagged = (uneven and peak > threshold) or peak > strong
        fix = None
        if flagged:
            fix = (
                "replace it by a resize-convolution (nn.Upsample then a stride-1 conv), or use a kernel size "
                f"divisible by the stride {s[0]}"
                if kind == "conv_transpose"
                else f"use a kernel size divisible by the stride {s[0]}, or downsample by pooling before a stride-1 conv"
            )
        rows.append(CheckerboardLayer(path, kind, k, s, overlap, cv, spectral, bool(flagged), fix))
    return CheckerboardResult(rows, tuple(input_shape), threshold)
