"""Sanity checks for attribution maps (Adebayo et al. 2018, "cascading randomization").

The model's weights are randomized from the top down, one stage at a time (the last blocks first, then
more blocks, then the embeddings), and each attribution method is run again. A map that explains the model
must change: its Spearman rank correlation (of ``|attribution|``) with the trained model's map must fall
below ``threshold`` once the whole model is random. A method whose map stays the same is *flagged*: it
describes the input, not the model. The weights are restored afterwards, whatever happens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .._render import esc, fmt, standalone
from ..core._errors import InputError
from ..core._result import jsonable

THRESHOLD = 0.5
"""Largest rank correlation with the trained map that a method may keep on the fully random model."""


@dataclass
class SanityResult:
    """Rank correlations per method and randomization stage (the first stage is the trained model)."""

    stages: list[str]
    correlations: dict[str, list[float]]
    """``{method: [one value per stage]}``, mean over the prompts."""
    threshold: float = THRESHOLD
    flagged: list[str] = field(default_factory=list)
    """Methods whose map stayed (correlation >= threshold) on the fully randomized model."""

    def to_dict(self) -> dict[str, Any]:
        return jsonable({"stages": self.stages, "correlations": self.correlations, "threshold": self.threshold,
                         "flagged": self.flagged})  # fmt: skip

    def to_html(self) -> str:
        """A self-contained page: one row per method, its correlation at each stage, flagged methods marked."""
        head = "".join(f"<th class='num'>{esc(s)}</th>" for s in self.stages)
        rows = "".join(
            f"<tr><td>{esc(m)}{' (flagged)' if m in self.flagged else ''}</td>"
            + "".join(f"<td class='num'>{esc(fmt(v))}</td>" for v in vals)
            + "</tr>"
            for m, vals in self.correlations.items()
        )
        return standalone("Attribution sanity checks", (
            f"<h1>Attribution sanity checks</h1><p>Rank correlation with the trained model's map at each "
            f"randomization stage; a method is flagged when it stays at {fmt(self.threshold)} or above on the "
            f"fully random model.</p><table class='t'><tr><th>method</th>{head}</tr>{rows}</table>"
        ))  # fmt: skip


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two 1-d tensors (average ranks for ties)."""
    ra, rb = _ranks(a.double().flatten()), _ranks(b.double().flatten())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / den if den > 0 else 0.0


def _ranks(x: torch.Tensor) -> torch.Tensor:
    order = x.argsort()
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(len(x), dtype=x.dtype)
    for v in x.unique():  # ties share their mean rank
        m = x == v
        if int(m.sum()) > 1:
            ranks[m] = ranks[m].mean()
    return ranks


def block_stages(model) -> list[tuple[str, list[str]]]:
    """Cascading stages for a model with ``model.blocks``-style layers: top third, two thirds, all, embeddings.

    Returns ``[(label, [parameter-name prefixes randomized so far])]``."""
    names = [n for n, _ in model.module.named_parameters()]
    layer_ids = sorted({int(p.split(".")[i + 1]) for p in names for i, part in enumerate(p.split(".")[:-1])
                        if part in ("layers", "h", "layer", "blocks") and p.split(".")[i + 1].isdigit()})  # fmt: skip
    if not layer_ids:
        raise InputError("sanity checks need a model with numbered layers (model.layers.N / h.N / blocks.N)")
    n = len(layer_ids)
    out = []
    for frac, label in ((1 / 3, "top third of blocks"), (2 / 3, "top two thirds"), (1.0, "all blocks")):
        keep = layer_ids[n - max(1, round(n * frac)) :]
        out.append((label, [f".{i}." for i in keep]))
    out.append(("all blocks + embeddings", ["*"]))
    return out


def cascading_randomization(
    model,
    prompts: Sequence[Any],
    methods: dict[str, Callable[[Any, Any], torch.Tensor]],
    *,
    threshold: float = THRESHOLD,
    seed: int = 0,
) -> SanityResult:
    """Run ``methods`` (``{name: fn(model, prompt) -> [pos]}``) on the trained model and after each stage."""
    stages = block_stages(model)
    params = dict(model.module.named_parameters())
    saved = {k: p.detach().clone() for k, p in params.items()}
    gen = torch.Generator().manual_seed(seed)
    trained = {m: [fn(model, p).detach().abs() for p in prompts] for m, fn in methods.items()}
    corr: dict[str, list[float]] = {m: [1.0] for m in methods}
    randomized: set[str] = set()  # the parameters redrawn by an earlier (cumulative) stage
    try:
        for _, prefixes in stages:
            with torch.no_grad():
                for name, p in params.items():
                    if "*" in prefixes or any(pre in f".{name}" for pre in prefixes):
                        if name not in randomized:
                            _randomize_(p, gen)
                            randomized.add(name)
            for m, fn in methods.items():
                vals = [
                    spearman(t, fn(model, p).detach().abs()) for t, p in zip(trained[m], prompts, strict=True)
                ]
                corr[m].append(sum(vals) / len(vals))
    finally:
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(saved[k])
    flagged = [m for m, c in corr.items() if c[-1] >= threshold]
    return SanityResult(["trained", *[s for s, _ in stages]], corr, threshold, flagged)


def _randomize_(p: torch.Tensor, gen: torch.Generator) -> None:
    """Redraw a weight with its own mean and spread (a 1-d weight such as a norm scale: permuted)."""
    if p.ndim >= 2:
        new = torch.randn(p.shape, generator=gen) * float(p.float().std()) + float(p.float().mean())
    else:
        new = p.detach().flatten()[torch.randperm(p.numel(), generator=gen)].view_as(p)
    p.copy_(new.to(p.dtype))
