"""``visualize``: optimise images so that an objective is high (feature visualisation, Olah et al. 2017).

The images come from a parameterisation (``_param.py``: FFT with 1/f scaling and colour decorrelation by
default, or pixels), pass transformation robustness (pad, jitter, scale, rotate) and an optional
``normalize=(mean, std)`` before the model, and Adam (lr 0.05) climbs the objective. The activations are
read with the core's ``tsi.Fn`` at each objective site, so gradients reach the image through the user's own
forward. ``seed`` fixes the initial image and every random transform: the same seed gives the same images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .._progress import progress as _progress
from .._render import esc, fmt, img_tag, line_chart
from ..core._errors import InputError
from ..core._interventions import Fn
from ..core._model import Model
from ._common import as_model
from ._objectives import Objective, as_objective
from ._param import ImageParam, Transforms
from ._picture import to_rgb, upscale


@dataclass
class FeatureVis:
    """The optimised ``images`` ``[batch, C, H, W]`` in [0, 1] and the objective's ``history`` ``[steps]``
    (the batch mean at each step, on transformed images)."""

    images: torch.Tensor
    history: torch.Tensor
    objective: str
    seed: int
    param: str
    final: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    """``[batch]`` the objective on the untransformed final images."""

    def to_dict(self) -> dict:
        return {
            "objective": self.objective,
            "seed": self.seed,
            "param": self.param,
            "history": self.history.tolist(),
            "final": self.final.tolist(),
            "images": self.images.tolist(),
        }

    def to_html(self, size: int = 128) -> str:
        imgs = "".join(img_tag(upscale(to_rgb(im), size), title=self.objective) for im in self.images)
        chart = line_chart(
            [("objective", list(range(len(self.history))), self.history.tolist())],
            x_title="step", y_title="objective",
        )  # fmt: skip
        final = ", ".join(fmt(float(v)) for v in self.final)
        return f"<section><h3>{esc(self.objective)}</h3><div>{imgs}</div><p>final: {esc(final)}</p>{chart}</section>"


def objective_values(
    model: Model, objective: Objective, images: torch.Tensor, grad: bool = False
) -> torch.Tensor:
    """``[batch]`` the objective on ``images`` (inside the autograd graph when ``grad``)."""
    acts: dict[str, torch.Tensor] = {}

    def grab(name):
        def fn(value, ctx):
            acts[name] = value
            return value

        return Fn(fn)

    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx:
        model.run(images, interventions={s: grab(s) for s in objective.sites}, keep_graph=grad)
        return objective(acts)


def input_shape_of(model: Model) -> tuple[int, int, int, int]:
    meta = getattr(model, "meta", None) or {}
    if "input_shape" in meta:
        return tuple(meta["input_shape"])  # type: ignore[return-value]
    return (1, 3, 224, 224)


def visualize(
    model: Model | torch.nn.Module,
    objective: Objective | str,
    steps: int = 256,
    seed: int = 0,
    *,
    shape: tuple[int, int, int, int] | None = None,
    batch: int | None = None,
    param: str = "fft",
    decorrelate: bool = True,
    transforms: Transforms | str | None = "standard",
    normalize: tuple[Any, Any] | None = None,
    lr: float = 0.05,
    progress: bool = True,
) -> FeatureVis:
    """Images that maximise ``objective`` (``tsi.vision.channel("layer3:output", 12)``, sums of objectives...).

    ``shape``: ``[batch, C, H, W]`` of the images (default: the model's input shape, ``model.meta["input_shape"]``,
    else 1x3x224x224); ``batch`` overrides its batch size. ``transforms``: ``"standard"`` (scaled to the image
    size), ``None`` or a ``Transforms``.
    """
    if steps < 1:
        raise InputError(f"steps must be at least 1, not {steps}")
    model, objective = as_model(model), as_objective(objective)
    dims: tuple[int, ...] = tuple(shape or input_shape_of(model))
    if batch is not None:
        dims = (batch, *dims[1:])
    if len(dims) != 4:
        raise InputError(f"shape must be (batch, C, H, W), not {dims}")
    if transforms == "standard":
        transforms = Transforms.standard(max(dims[-2:]))
    elif transforms is None:
        transforms = Transforms.none()
    elif not isinstance(transforms, Transforms):
        raise InputError(f"transforms must be 'standard', None or a Transforms, not {transforms!r}")
    p = next(iter(model.module.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(seed)
    image = ImageParam(dims, param=param, decorrelate=decorrelate, gen=gen).to(device)
    opt = torch.optim.Adam(image.parameters(), lr=lr)
    mean, std = (
        (None, None)
        if normalize is None
        else (torch.as_tensor(v).view(1, -1, 1, 1).to(device) for v in normalize)
    )
    history = []

    def prepare(x):
        return x if mean is None else (x - mean) / std

    with _progress(total=steps, desc="feature vis", unit="step", enabled=progress) as bar:
        for _ in range(steps):
            x = transforms(image(), gen)
            value = objective_values(model, objective, prepare(x), grad=True)
            opt.zero_grad()
            (-value.sum()).backward()
            opt.step()
            history.append(float(value.detach().mean()))
            bar.update(1)
    with torch.no_grad():
        final_images = image().detach()
    final = objective_values(model, objective, prepare(final_images))
    return FeatureVis(
        final_images.cpu(), torch.tensor(history), objective.name, seed, param, final.detach().cpu()
    )
