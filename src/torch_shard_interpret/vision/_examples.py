"""Dataset examples: the images (or crops) of a data set that score highest on an objective."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .._progress import progress as _progress
from .._render import esc, fmt, img_tag
from ..core._errors import InputError
from ._common import as_model, check_images
from ._featvis import objective_values
from ._objectives import Objective, as_objective
from ._picture import to_rgb, upscale

if TYPE_CHECKING:
    from ..core._model import Model


@dataclass
class DatasetExamples:
    """``images`` ``[k, C, h, w]`` (whole images or crops), their ``scores`` ``[k]`` and ``indices`` ``[k]``
    into the data set; ``boxes`` ``[k, 4]`` ``(top, left, height, width)`` for crops."""

    images: torch.Tensor
    scores: torch.Tensor
    indices: torch.Tensor
    boxes: torch.Tensor
    objective: str

    def to_dict(self) -> dict:
        return {
            "objective": self.objective,
            "scores": self.scores.tolist(),
            "indices": self.indices.tolist(),
            "boxes": self.boxes.tolist(),
        }

    def to_html(self, size: int = 96) -> str:
        cells = "".join(
            f"<figure>{img_tag(upscale(to_rgb(im), size))}<figcaption>#{int(i)}: {fmt(float(s))}</figcaption></figure>"
            for im, s, i in zip(self.images, self.scores, self.indices, strict=True)
        )
        return f"<section><h3>top examples: {esc(self.objective)}</h3><div>{cells}</div></section>"


def dataset_examples(
    model: Model | torch.nn.Module,
    objective: Objective | str,
    images: torch.Tensor,
    k: int = 8,
    crop: int | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> DatasetExamples:
    """The ``k`` images of ``images`` with the highest objective. ``crop``: for a ``neuron``-like map objective,
    score every ``crop`` x ``crop`` window instead (the rest set to the image mean) and keep the best crops."""
    model, objective, images = as_model(model), as_objective(objective), check_images(images)
    if k < 1:
        raise InputError(f"k must be at least 1, not {k}")
    if crop is None:
        candidates = images
        boxes = torch.tensor([[0, 0, images.shape[-2], images.shape[-1]]]).repeat(len(images), 1)
        owners = torch.arange(len(images))
    else:
        if not 1 <= crop <= min(images.shape[-2:]):
            raise InputError(f"crop must be 1..{min(images.shape[-2:])} pixels, not {crop}")
        step = max(1, crop // 2)
        h, w = images.shape[-2:]
        corners = [(i, j) for i in range(0, h - crop + 1, step) for j in range(0, w - crop + 1, step)]
        fill = images.mean((1, 2, 3), keepdim=True)
        parts = []
        for i, j in corners:
            x = fill.expand_as(images).clone()
            x[..., i : i + crop, j : j + crop] = images[..., i : i + crop, j : j + crop]
            parts.append(x)
        candidates = torch.cat(parts)
        boxes = torch.tensor([[i, j, crop, crop] for i, j in corners]).repeat_interleave(len(images), 0)
        owners = torch.arange(len(images)).repeat(len(corners))
    scores = []
    with _progress(total=len(candidates), desc="dataset examples", unit="image", enabled=progress) as bar:
        for s in range(0, len(candidates), batch_size):
            scores.append(objective_values(model, objective, candidates[s : s + batch_size]).detach())
            bar.update(min(batch_size, len(candidates) - s))
    score = torch.cat(scores)
    top = score.topk(min(k, len(score))).indices
    out = []
    for t in top.tolist():
        i, j, hh, ww = boxes[t].tolist()
        out.append(images[owners[t], :, i : i + hh, j : j + ww])
    return DatasetExamples(torch.stack(out), score[top], owners[top], boxes[top], objective.name)
