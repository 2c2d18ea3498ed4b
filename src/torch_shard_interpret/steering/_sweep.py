"""sweep: steer at several layers and scales, and measure what each cell does and what it costs.

For every (layer, scale) cell the prompts are generated from (greedy, with the KV cache) while the vector is
added at that layer's site, then two numbers are recorded:

- ``metric``: the user's measure of the effect, averaged over prompts. ``metric_on="text"`` (default) calls
  ``metric(continuation: str) -> float`` once per prompt; ``metric_on="logits"`` calls
  ``metric(logits) -> Tensor[1]`` with the STEERED model's logits ``[1, pos, d_vocab]`` over one prompt plus
  its steered continuation (``pos`` = that row's real length, no padding). The metric is always called
  outside the steering context, so a text metric may run the model itself, unsteered.
- ``perplexity``: fluency, the perplexity of the steered continuation under the UNSTEERED model (the
  geometric mean over prompts of each continuation's perplexity). The unsteered generations give the
  baseline of both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch

from .._render import esc, standalone
from ..core._errors import InputError
from ..core._result import jsonable
from ._acts import _bar, as_texts
from ._vector import SteeringVector

if TYPE_CHECKING:
    from ..core._model import Model

Builder = SteeringVector | Callable[[Any, str], SteeringVector] | tuple[Sequence[str], Sequence[str]]


@dataclass
class SweepCell:
    """One (layer, scale) cell of a sweep."""

    layer: int | str
    scale: float
    site: str
    metric: float
    perplexity: float
    texts: list[str]


@dataclass
class SweepResult:
    """What ``sweep`` measured: ``metric[i, j]`` and ``perplexity[i, j]`` for ``layers[i]`` and ``scales[j]``."""

    layers: list[int | str]
    scales: list[float]
    sites: list[str]
    metric: torch.Tensor
    """``[n_layers, n_scales]`` mean of the user metric over prompts (NaN without a metric)."""
    perplexity: torch.Tensor
    """``[n_layers, n_scales]`` perplexity of the steered text under the unsteered model."""
    texts: dict[tuple[int | str, float], list[str]]
    """``(layer, scale) -> [continuation per prompt]``."""
    prompts: list[str]
    baseline_metric: float
    baseline_perplexity: float
    baseline_texts: list[str]
    vector_norms: dict[int | str, float] = field(default_factory=dict)
    """Norm of the vector added at each layer (before ``scale``)."""

    def cell(self, layer: int | str, scale: float) -> SweepCell:
        i, j = self.layers.index(layer), self.scales.index(float(scale))
        return SweepCell(
            layer, self.scales[j], self.sites[i], float(self.metric[i, j]), float(self.perplexity[i, j]),
            self.texts[(layer, self.scales[j])],
        )  # fmt: skip

    def cells(self) -> list[SweepCell]:
        """Every cell, layer-major (``pandas.DataFrame(map(vars, result.cells()))`` makes a table)."""
        return [self.cell(layer, s) for layer in self.layers for s in self.scales]

    def best(self, max_perplexity: float | str | None = "auto", maximize: bool = True) -> SweepCell:
        """The cell with the largest (``maximize=False``: smallest) metric among the fluent ones.

        ``max_perplexity``: cells whose perplexity is above it are skipped; ``"auto"`` is twice the
        baseline perplexity, ``None`` keeps every cell.
        """
        if bool(torch.isnan(self.metric).all()):
            raise InputError("this sweep has no metric values; run sweep(..., metric=...) to rank cells")
        limit = 2 * self.baseline_perplexity if max_perplexity == "auto" else max_perplexity
        ok = [c for c in self.cells() if not math.isnan(c.metric)]
        if limit is not None:
            ok = [c for c in ok if c.perplexity <= float(limit)]  # type: ignore[arg-type]
        if not ok:
            raise InputError(
                f"no cell has perplexity <= {float(limit):.3g} (baseline {self.baseline_perplexity:.3g}); "  # type: ignore[arg-type]
                "pass a larger max_perplexity, or None"
            )
        return (max if maximize else min)(ok, key=lambda c: c.metric)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the grid (``metric`` and ``perplexity`` as ``[n_layers][n_scales]``, NaN as None), the
        baseline, and every cell layer-major in ``cells`` (``{"layer", "scale", "site", "metric",
        "perplexity", "texts"}``)."""
        return jsonable({
            "layers": self.layers, "scales": self.scales, "sites": self.sites, "metric": self.metric,
            "perplexity": self.perplexity, "prompts": self.prompts, "baseline_metric": self.baseline_metric,
            "baseline_perplexity": self.baseline_perplexity, "baseline_texts": self.baseline_texts,
            "vector_norms": self.vector_norms, "cells": [vars(c) for c in self.cells()],
        })  # fmt: skip

    def to_html(self) -> str:
        """A self-contained HTML page: metric and perplexity heatmaps (layers x scales); hover a cell for text."""
        parts = [
            "<section class='sweep'><h2>Steering sweep</h2>",
            f"<p>baseline (unsteered): metric <b>{_fmt(self.baseline_metric)}</b>, perplexity "
            f"<b>{_fmt(self.baseline_perplexity)}</b>; {len(self.prompts)} prompt(s)</p>",
        ]
        has_metric = not bool(torch.isnan(self.metric).all())
        if has_metric:
            parts.append(
                self._table("metric (mean over prompts)", self.metric, self.baseline_metric, diverging=True)
            )
        parts.append(
            self._table("perplexity under the unsteered model", self.perplexity, self.baseline_perplexity)
        )
        parts.append("</section>")
        return standalone("Steering sweep", "\n".join(parts))

    def _table(self, title: str, values: torch.Tensor, base: float, diverging: bool = False) -> str:
        finite = values[torch.isfinite(values)]
        span = float((finite - base).abs().max()) if finite.numel() else 1.0
        rows = [f"<h3>{esc(title)}</h3><table class='grid'><tr><th>layer \\ scale</th>"]
        rows += [f"<th>{s:g}</th>" for s in self.scales]
        rows.append("</tr>")
        for i, layer in enumerate(self.layers):
            rows.append(f"<tr><th>{esc(layer)}</th>")
            for j, s in enumerate(self.scales):
                v = float(values[i, j])
                sample = self.texts[(layer, s)][0] if self.texts[(layer, s)] else ""
                tip = esc(f"{self.prompts[0]}|{sample}")
                rows.append(
                    f"<td style='background:{_colour(v, base, span, diverging)}' title=\"{tip}\">{_fmt(v)}</td>"
                )
            rows.append("</tr>")
        rows.append("</table>")
        return "".join(rows)

    def __repr__(self) -> str:
        return (
            f"SweepResult(layers={self.layers}, scales={self.scales}, baseline_metric={_fmt(self.baseline_metric)}, "
            f"baseline_perplexity={_fmt(self.baseline_perplexity)})"
        )


def sweep(
    model: Model,
    sv_or_builder: Builder,
    prompts: str | Sequence[str],
    layers: Sequence[int | str] | None = None,
    scales: Sequence[float] = (1.0, 2.0, 4.0, 8.0),
    metric: Callable[[Any], Any] | None = None,
    max_new_tokens: int = 20,
    *,
    metric_on: str = "text",
    site: str = "blocks.{layer}.resid_post",
    positions: Any = None,
    progress: bool = True,
) -> SweepResult:
    """Steer ``prompts`` at every (layer, scale) and record ``metric`` and fluency (see the module docstring).

    ``sv_or_builder``: a ``SteeringVector`` (the same vector is added at every layer's site), a builder
    ``f(model, site) -> SteeringVector``, or a pair ``(positive_texts, negative_texts)`` (then
    ``SteeringVector.from_contrast`` is recomputed at each layer's site). ``layers``: block indices (the site
    is ``site.format(layer=i)``) or site names; default: the vector's own site.
    """
    prompts = as_texts(prompts, "prompts")
    if metric_on not in ("text", "logits"):
        raise InputError(f"metric_on must be 'text' or 'logits', not {metric_on!r}")
    if metric is not None and not callable(metric):
        raise InputError(
            f"metric must be a function (of a text, or of logits with metric_on='logits'), not {metric!r}"
        )
    scales = [float(s) for s in scales]
    if not scales:
        raise InputError("scales is empty; give at least one scale, e.g. scales=[2, 4, 8]")
    if layers is None:
        if not isinstance(sv_or_builder, SteeringVector):
            raise InputError(
                "layers= is needed when steering with a builder or contrast texts, e.g. layers=[4, 8, 12]"
            )
        layers = [_layer_of(sv_or_builder.site)]
    layers = list(layers)
    if not layers:
        raise InputError("layers is empty; give at least one layer, e.g. layers=[6]")
    sites = [_site_for(model, layer, site) for layer in layers]
    vectors = {layer: _vector_at(model, sv_or_builder, s) for layer, s in zip(layers, sites, strict=True)}

    base_texts = _generate(model, prompts, max_new_tokens, None)
    base_metric = _metric(model, metric, metric_on, prompts, base_texts, None)
    base_ppl = perplexity(model, prompts, base_texts)

    n_l, n_s = len(layers), len(scales)
    metric_t = torch.full((n_l, n_s), float("nan"))
    ppl_t = torch.full((n_l, n_s), float("nan"))
    texts: dict[tuple[int | str, float], list[str]] = {}
    cells = [(i, j) for i in range(n_l) for j in range(n_s)]
    for i, j in _bar(cells, progress, "sweep"):
        layer, scale, sv = layers[i], scales[j], vectors[layers[i]]
        ivs = {sv.site: sv.intervention(scale, positions)}
        out = _generate(model, prompts, max_new_tokens, ivs)
        texts[(layer, scale)] = out
        metric_t[i, j] = _metric(model, metric, metric_on, prompts, out, ivs)
        ppl_t[i, j] = perplexity(model, prompts, out)
    return SweepResult(
        layers=layers, scales=scales, sites=sites, metric=metric_t, perplexity=ppl_t, texts=texts, prompts=prompts,
        baseline_metric=base_metric, baseline_perplexity=base_ppl, baseline_texts=base_texts,
        vector_norms={layer: vectors[layer].norm for layer in layers},
    )  # fmt: skip


def perplexity(
    model: Model, prompts: Sequence[str], continuations: Sequence[str], per_prompt: bool = False
) -> Any:
    """Perplexity of each continuation given its prompt under ``model`` as it is (no steering unless an
    enclosing ``intervene`` adds some): the geometric mean over prompts, or the list with ``per_prompt=True``.
    Empty continuations are skipped (NaN in the list)."""
    nll = _continuation_nll(model, list(prompts), list(continuations), None)
    ppl = [math.exp(v) if not math.isnan(v) else float("nan") for v in nll]
    if per_prompt:
        return ppl
    good = [v for v in nll if not math.isnan(v)]
    return math.exp(sum(good) / len(good)) if good else float("nan")


# ---- internals ----------------------------------------------------------------------------------
def _generate(model: Model, prompts: list[str], max_new_tokens: int, ivs: Any) -> list[str]:
    out = model.generate(prompts, max_new_tokens=max_new_tokens, interventions=ivs)
    # text prompts give texts (token ids only come back for id inputs)
    return [out] if isinstance(out, str) else cast("list[str]", out)


def _rows(
    model: Model, prompts: list[str], conts: list[str]
) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
    """Right-padded ``[batch, pos]`` ids and mask of prompt + continuation (tokenised apart, then joined),
    with each row's prompt length and total length."""
    tok = model.tokenizer
    if tok is None:
        raise InputError("steering sweeps and perplexity need a model with a tokenizer")
    ids, n_prompt = [], []
    for p, c in zip(prompts, conts, strict=True):
        a = list(tok(p)["input_ids"])
        b = list(tok(c, add_special_tokens=False)["input_ids"]) if c else []
        ids.append(a + b)
        n_prompt.append(len(a))
    lengths = [len(r) for r in ids]
    width = max(lengths)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    t = torch.full((len(ids), width), pad, dtype=torch.long)
    m = torch.zeros((len(ids), width), dtype=torch.long)
    for i, r in enumerate(ids):
        t[i, : len(r)] = torch.tensor(r)
        m[i, : len(r)] = 1
    return t, m, n_prompt, lengths


def _forward(model: Model, prompts: list[str], conts: list[str], ivs: Any):
    ids, mask, n_prompt, lengths = _rows(model, prompts, conts)
    logits = model.run({"input_ids": ids, "attention_mask": mask}, interventions=ivs).logits
    assert logits is not None  # a run that returns logits (no early stop) always has them
    return ids, logits.float().cpu(), n_prompt, lengths


def _continuation_nll(model: Model, prompts: list[str], conts: list[str], ivs: Any) -> list[float]:
    ids, logits, n_prompt, lengths = _forward(model, prompts, conts, ivs)
    out = []
    for i, (n_p, n) in enumerate(zip(n_prompt, lengths, strict=True)):
        if n <= n_p:
            out.append(float("nan"))
            continue
        logp = torch.log_softmax(logits[i, n_p - 1 : n - 1], -1)  # predicts tokens n_p .. n-1
        out.append(float(-logp.gather(-1, ids[i, n_p:n, None]).mean()))
    return out


def _metric(
    model: Model, metric: Any, metric_on: str, prompts: list[str], texts: list[str], ivs: Any
) -> float:
    if metric is None:
        return float("nan")
    if metric_on == "text":
        values = [_scalar(metric(t), "metric(text)") for t in texts]
    else:
        _, logits, _, lengths = _forward(model, prompts, texts, ivs)
        values = [_scalar(metric(logits[i : i + 1, :n]), "metric(logits)") for i, n in enumerate(lengths)]
    return sum(values) / len(values)


def _scalar(value: Any, what: str) -> float:
    if torch.is_tensor(value):
        if value.numel() != 1:
            raise InputError(
                f"{what} must return one number per call, not a tensor of shape {list(value.shape)}"
            )
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must return a number, not {type(value).__name__}") from None


def _layer_of(site: str) -> int | str:
    m = re.match(r"blocks\.(\d+)\.", site)
    return int(m.group(1)) if m else site


def _site_for(model: Model, layer: int | str, template: str) -> str:
    name = layer if isinstance(layer, str) else template.format(layer=layer)
    found = model.resolve(name)
    if len(found) != 1:
        raise InputError(f"layer {layer!r} gives {name!r}, which matches {len(found)} sites; name one site")
    return found[0].name


def _vector_at(model: Model, spec: Builder, site: str) -> SteeringVector:
    if isinstance(spec, SteeringVector):
        return spec if spec.site == site else spec.at(site)
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and not callable(spec[0]):
        return SteeringVector.from_contrast(model, spec[0], spec[1], site=site)
    if callable(spec):
        sv = spec(model, site)
        if not isinstance(sv, SteeringVector):
            raise InputError(f"the builder must return a SteeringVector, not {type(sv).__name__}")
        return sv if sv.site == site else sv.at(site)
    raise InputError(
        "sweep needs a SteeringVector, a builder f(model, site) -> SteeringVector, or (positive_texts, "
        f"negative_texts), not {type(spec).__name__}"
    )


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.3g}"


def _colour(v: float, base: float, span: float, diverging: bool) -> str:
    if math.isnan(v) or math.isnan(base) or span <= 0:
        return "#fff"
    t = max(-1.0, min(1.0, (v - base) / span))
    if not diverging:
        t = max(t, 0.0)  # perplexity: only worse than baseline is coloured (orange)
        return f"rgba(230,120,30,{0.7 * t:.2f})"
    return f"rgba(40,110,220,{0.7 * t:.2f})" if t >= 0 else f"rgba(220,50,50,{-0.7 * t:.2f})"
