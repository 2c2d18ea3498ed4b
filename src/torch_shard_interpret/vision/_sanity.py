"""Sanity checks for attribution maps (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

Model randomization: the weights are re-drawn layer by layer, from the output down (cascading), and the map
is recomputed after each step; data randomization: the map of a model trained on permuted labels. A map
that stays the same (Spearman rank correlation of ``|map|`` near 1) does not explain the model, and is
flagged. The re-drawn weights keep each tensor's mean and standard deviation; the model is copied first,
so the user's model is never changed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .._render import esc, fmt, line_chart
from ..core._model import Model
from ._sites import wrap

THRESHOLD = 0.5
NO_LABEL_MODEL = "label randomization not run: pass label_model=, e.g. tsi.vision.random_label_model(model, images, labels)"


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Spearman rank correlation of ``|a|`` and ``|b|`` (``[batch, ...]`` -> ``[batch]``)."""

    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    norm = ra.norm(dim=1) * rb.norm(dim=1)
    # a constant map (e.g. all-zero gradients of a dead network) has no ranking: undefined, not 0
    return torch.where(
        norm > 0, (ra * rb).sum(1) / norm.clamp_min(1e-12), torch.full_like(norm, float("nan"))
    )


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks of ``|x|`` per row, ties sharing their mean rank."""
    rows = x.detach().abs().flatten(1).double()
    out = torch.empty_like(rows)
    for i, row in enumerate(rows):
        values, inverse, counts = torch.unique(row, return_inverse=True, return_counts=True)
        ends = counts.cumsum(0).double()
        out[i] = (ends - (counts.double() - 1) / 2)[inverse]
    return out


def layers_top_down(module: nn.Module) -> list[str]:
    """Paths of the modules that own parameters, from the output end to the input end."""
    names = [p for p, m in module.named_modules() if any(True for _ in m.parameters(recurse=False))]
    return names[::-1]


def _redraw(module: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for p in module.parameters(recurse=False):
            if p.numel() > 1:
                noise = torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p)
                p.copy_(p.mean() + p.float().std().to(p) * noise)


@dataclass
class SanityReport:
    """How much an attribution changes when the model's weights or its labels are randomized."""

    method: str
    cascade: list[tuple[str, float]]
    """``(layer randomized last, similarity to the original map)``, from the output layer down."""
    label_similarity: float | None = None
    """Similarity to the map of a model trained on permuted labels (None: no such model given)."""
    threshold: float = THRESHOLD
    notes: list[str] = field(default_factory=list)
    independent: list[tuple[str, float]] = field(default_factory=list)
    """``(layer group, similarity)`` with only that group re-drawn (``independent=True``); not used for the flag."""

    @property
    def final_similarity(self) -> float:
        """Similarity once every layer is randomized."""
        return self.cascade[-1][1] if self.cascade else float("nan")

    @property
    def flagged(self) -> bool:
        """True when the map barely depends on the weights (or on the labels): it fails the check."""
        bad = self.final_similarity >= self.threshold
        if self.label_similarity is not None:
            bad = bad or self.label_similarity >= self.threshold
        return bool(bad)

    @property
    def score(self) -> float:
        """``1 - final similarity``: 0 for a map that ignores the weights, near 1 for one that depends on them."""
        return 1.0 - self.final_similarity

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "cascade": [{"layer": n, "similarity": s} for n, s in self.cascade],
            "label_similarity": self.label_similarity,
            "final_similarity": self.final_similarity,
            "threshold": self.threshold,
            "flagged": self.flagged,
            "score": self.score,
            "notes": list(self.notes),
            "independent": [{"layer": n, "similarity": s} for n, s in self.independent],
        }

    def to_html(self) -> str:
        xs = list(range(len(self.cascade)))
        chart = line_chart(
            [("similarity", xs, [s for _, s in self.cascade])],
            x_title="layer groups randomized, output first", y_title="Spearman |map|",
            y_range=(-0.2, 1.0), hlines=[(self.threshold, "flag")],
        )  # fmt: skip
        verdict = "FLAGGED: the map does not depend on the model" if self.flagged else "passes"
        label = "" if self.label_similarity is None else f", label randomization {fmt(self.label_similarity)}"
        return (
            f"<div class='sanity'><p><b>{esc(self.method)}</b> sanity check: {esc(verdict)} "
            f"(fully randomized {fmt(self.final_similarity)}{esc(label)}, threshold {fmt(self.threshold)})</p>"
            + "".join(f"<p>{esc(n)}</p>" for n in self.notes)
            + f"{chart}</div>"
        )


def sanity_check(
    method: str,
    model: Model,
    original: torch.Tensor,
    recompute: Callable[[Model], torch.Tensor],
    label_model: Model | None = None,
    max_steps: int = 8,
    seed: int = 0,
    threshold: float = THRESHOLD,
    independent: bool = False,
) -> SanityReport:
    """Cascading randomization (at most ``max_steps`` recomputations) and, with ``label_model``, label
    randomization, of the map ``original`` that ``recompute(model)`` produced. ``independent``: also re-draw each
    layer group alone, on a fresh copy (Adebayo et al.'s independent randomization)."""
    layers = layers_top_down(model.module)
    if not layers:
        return SanityReport(method, [], None, threshold, ["the model has no parameters"])
    n = min(max_steps, len(layers))
    cuts = [round((i + 1) * len(layers) / n) for i in range(n)]
    copy_ = copy.deepcopy(model.module)
    gen = torch.Generator().manual_seed(seed)
    done = 0
    cascade = []
    for cut in cuts:
        for path in layers[done:cut]:
            _redraw(copy_.get_submodule(path), gen)
        done = cut
        new = recompute(wrap(copy_))
        cascade.append((layers[cut - 1], float(spearman(original, new).nanmean())))
    alone = []
    if independent:
        starts = [0, *cuts[:-1]]
        for start, cut in zip(starts, cuts, strict=True):
            fresh = copy.deepcopy(model.module)
            for path in layers[start:cut]:
                _redraw(fresh.get_submodule(path), gen)
            alone.append((layers[cut - 1], float(spearman(original, recompute(wrap(fresh))).nanmean())))
    label, notes = None, []
    if label_model is not None:
        label = float(spearman(original, recompute(label_model)).nanmean())
    else:
        notes.append(NO_LABEL_MODEL)
    return SanityReport(method, cascade, label, threshold, notes, alone)
