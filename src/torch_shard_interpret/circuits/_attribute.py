"""Edge scores: EAP, EAP-IG (inputs and activations) and exact edge patching, all as a ``ScoredGraph``.

Scores estimate ``m(edge patched from the counterfactual) - m(clean)``, averaged over prompts:
- ``eap``: ``(a'_src - a_src) . d m / d x_dst`` with the gradient on the clean run; all edges from 2 forwards and
  1 backward, as an ``[S, D]`` matrix of per-source deltas dotted with per-destination gradients (no tensor per edge).
- ``eap-ig``: the same with the gradient averaged over ``steps`` points between the counterfactual and the clean
  run. ``ig="inputs"`` interpolates the embedding (``steps`` backwards); ``ig="activations"`` interpolates each
  layer's sources in turn, the others clean (``steps`` backwards per source stage).
- ``patching``: the exact effect of patching each edge alone, batched many edges per forward (the reference).
- ``acdc``: iterative pruning by exact patching with threshold ``tau`` (``_acdc.py``); returns an ``AcdcResult``,
  a ``ScoredGraph`` that is also the circuit kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .._progress import progress as _bar
from ..core._interventions import Fn
from ._arch import layout
from ._circuit import ScoredGraph
from ._engine import capture, grad_chunks, patched_logits
from ._graph import CircuitError, Graph
from ._graph import graph as build_graph
from ._inputs import Metric, metric_rows, pairs, rows_per_forward, scalar

if TYPE_CHECKING:
    from ..core._model import Model

METHODS = ("eap", "eap-ig", "patching", "acdc")


def attribute(
    model: Model,
    clean: Any,
    corrupt: Any,
    metric: Metric,
    method: str = "eap-ig",
    steps: int = 5,
    ig: str = "inputs",
    edges: list[str] | None = None,
    batch_size: int | None = None,
    per_position: bool = False,
    progress: bool = True,
    tau: float | None = None,
) -> ScoredGraph:
    """Score every edge of ``tsi.circuits.graph(model)`` (``edges=``: only these, for ``patching``).

    ``clean``/``corrupt``: a prompt or lists of prompts (pairs of equal token length); ``metric(logits)`` returns
    one value per prompt. ``per_position=True`` (EAP and EAP-IG) also keeps ``info["positions"]``, ``[E, pos]``
    scores per destination position (position-aware circuits, for prompts of one length). ``tau``: ACDC's
    threshold in metric units (None: 1% of ``|m(M) - m(empty)|``).
    """
    if method not in METHODS:
        raise CircuitError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if ig not in ("inputs", "activations"):
        raise CircuitError(f"ig must be 'inputs' or 'activations', not {ig!r}")
    if not isinstance(steps, int) or steps < 1:
        raise CircuitError(f"steps must be a positive int, not {steps!r}")
    if method == "acdc":
        from ._acdc import acdc

        return acdc(model, clean, corrupt, metric, threshold=tau, batch_size=batch_size, progress=progress)
    g = build_graph(model)
    lay = layout(model, g)
    groups = pairs(model, clean, corrupt)
    total = sum(c.shape[0] for c, _ in groups)
    if method == "patching":
        chosen = _edge_indices(g, edges)
        scores = torch.full((len(g.edges),), float("nan"))
        with _bar(
            total=len(chosen) * len(groups), desc="edge patching", unit="edge", enabled=progress
        ) as bar:
            part = torch.zeros(len(chosen))
            for c, k in groups:
                part += exact_effects(model, lay, c, k, metric, chosen, batch_size, bar) * c.shape[0]
        scores[chosen] = part / total
        return ScoredGraph(g, scores, "patching", {"prompts": total, "edges_scored": len(chosen)})
    if per_position and len(groups) > 1:
        raise CircuitError("per_position=True needs prompts of one token length (positions must line up)")
    matrix = torch.zeros(len(g.sources), len(g.dests))
    limits = _source_limits(g)
    pos_scores = None
    n_back = 0
    stages = _stages(g) if (method == "eap-ig" and ig == "activations") else [None]
    n_steps = 1 if method == "eap" else steps
    with _bar(
        total=len(groups) * len(stages) * n_steps, desc=method, unit="backward", enabled=progress
    ) as bar:
        for c, k in groups:
            corr, _ = capture(model, lay, k)
            corr_contrib = corr.contributions(lay)
            for stage in stages:
                keep = None
                if stage is not None:
                    keep = torch.zeros(len(g.sources), dtype=torch.bool)
                    keep[stage[1]] = True
                delta = None
                # alpha = 1 first: that run is the clean one, so the deltas are known before any gradient
                for step in range(n_steps, 0, -1):
                    alpha = step / n_steps
                    ivs = _interpolation(stage, corr, alpha) if method == "eap-ig" else None
                    src, chunks = grad_chunks(model, lay, c, scalar(metric), ivs)
                    n_back += 1
                    if delta is None:
                        # [S, n, p, d]; in place where no later stage reads the counterfactual's writes again
                        delta = src.contributions(
                            lay, corr_contrib if stage is None else corr_contrib.clone()
                        )
                        if keep is not None:
                            delta = delta * keep.to(delta.device)[:, None, None, None]
                    del src
                    if per_position and pos_scores is None:
                        pos_scores = torch.zeros(len(g.sources), len(g.dests), c.shape[1])
                    _add_scores(matrix, pos_scores, delta, chunks, limits, 1.0 / n_steps)
                    bar.update(1)
    info: dict[str, Any] = {"prompts": total, "backwards": n_back, "forwards": n_back + len(groups)}
    if method == "eap-ig":
        info.update(steps=steps, ig=ig)
    if pos_scores is not None:
        info["positions"] = pos_scores[g.edge_src, g.edge_dst] / total
    name = method if method == "eap" else f"eap-ig-{ig}"
    return ScoredGraph(g, matrix[g.edge_src, g.edge_dst] / total, name, info)


def _source_limits(g: Graph) -> torch.Tensor:
    """``[D]``: one past the last source with an edge into each destination (sources are in layer order, so
    the sources a destination can read are a prefix)."""
    limits = torch.zeros(len(g.dests), dtype=torch.long)
    return limits.scatter_reduce_(0, g.edge_dst, g.edge_src + 1, reduce="amax")


def _add_scores(
    matrix: torch.Tensor,
    pos_scores: torch.Tensor | None,
    delta: torch.Tensor,
    chunks: Any,
    limits: torch.Tensor,
    weight: float,
    group: int = 16,
) -> None:
    """``matrix[s, d] += weight * delta[s] . G[d]`` for every chunk of destination gradients ``G`` ([n, p, k, d]).

    Chunks are gathered ``group`` destinations at a time into one matmul with the ``[S, n*p*d]`` deltas, and
    only the sources before a destination's limit take part (a destination reads no later source).
    """
    flat = delta.reshape(delta.shape[0], -1)
    dests: list[int] = []
    grads: list[torch.Tensor] = []

    def flush() -> None:
        lim = int(limits[dests].max())
        G = torch.cat(grads)  # [k, n, p, d]
        matrix[:lim, dests] += (flat[:lim] @ G.reshape(G.shape[0], -1).T).cpu() * weight
        if pos_scores is not None:
            pos_scores[:lim, dests] += torch.einsum("snpd,knpd->skp", delta[:lim], G).cpu() * weight
        dests.clear()
        grads.clear()

    for idx, G in chunks:
        dests += idx
        grads.append(G.permute(2, 0, 1, 3))
        if len(dests) >= group:
            flush()
    if dests:
        flush()


def _edge_indices(g: Graph, edges: list[str] | None) -> list[int]:
    if edges is None:
        return list(range(len(g.edges)))
    bad = [e for e in edges if e not in g.index]
    if bad:
        raise CircuitError(
            f"{bad[0]!r} is not an edge of this model's graph; list them with tsi.circuits.graph(model).edges"
        )
    return [g.index[e] for e in edges]


def _stages(g: Graph) -> list[tuple[str, slice, str, int]]:
    """Source stages for EAP-IG-activations: (site, source positions, which tensor of Sources, layer)."""
    out = [("embed", g.source_slice("input"), "input", 0)]
    for i in range(g.n_layers):
        out.append((f"blocks.{i}.attn.z", g.source_slice("a", i), "z", i))
        out.append((f"blocks.{i}.mlp.out", g.source_slice("m", i), "mlp", i))
    return out


def _interpolation(stage: tuple | None, corr: Any, alpha: float) -> dict[str, Any]:
    """Move one stage's sources (the embedding by default) to ``corrupt + alpha * (clean - corrupt)``."""
    if stage is None:
        site, ref = "embed", corr.input
    else:
        site, _, kind, i = stage
        ref = corr.input if kind == "input" else getattr(corr, kind)[i]

    def fn(value: torch.Tensor, ctx: Any) -> torch.Tensor:
        return ref + alpha * (value - ref)

    return {site: Fn(fn)}


def exact_effects(
    model: Model,
    lay: Any,
    clean: torch.Tensor,
    corrupt: torch.Tensor,
    metric: Metric,
    chosen: list[int],
    batch_size: int | None = None,
    bar: Any = None,
) -> torch.Tensor:
    """``[len(chosen)]``: mean over prompts of ``m(edge patched alone) - m(clean)``."""
    g = lay.graph
    n, p = clean.shape
    corr, _ = capture(model, lay, corrupt)
    _, logits = capture(model, lay, clean)
    base = metric_rows(metric, logits, n)[0]
    size = batch_size or rows_per_forward(lay, n, p)
    out = torch.empty(len(chosen))
    for start in range(0, len(chosen), size):
        block = chosen[start : start + size]
        A = torch.zeros(len(block), len(g.sources), len(g.dests))
        idx = torch.tensor(block)
        A[torch.arange(len(block)), g.edge_src[idx], g.edge_dst[idx]] = 1
        m = metric_rows(metric, patched_logits(model, lay, clean, corr, A), n)
        out[start : start + len(block)] = (m - base).mean(dim=1)
        if bar is not None:
            bar.update(len(block))
    return out
