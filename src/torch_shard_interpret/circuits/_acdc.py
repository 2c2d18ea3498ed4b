"""ACDC (Conmy et al. 2023): prune edges by exact patching, from the logits back to the input, with threshold tau.

Destinations are visited in reverse forward order, one *stage* at a time: the logits, then layer ``L-1``'s MLP,
then its heads' q/k/v inputs, and so on down to layer 0. For each stage every incoming edge still in the
circuit is patched alone on top of the current circuit; an edge whose removal moves the metric by less than
``tau`` (``|m(C \\ e) - m(C)| < tau``) is removed. Batching, so that far fewer forwards run than one per edge:

- all candidate edges of a stage are tested in the same batched forwards (one circuit per row block), and the
  edges under ``tau`` are removed together (classic ACDC removes them one by one, each time re-measuring);
- the circuit's own metric ``m(C)`` rides along as the first row of the next stage's first forward;
- a destination whose node no longer sends any edge is dead: its incoming edges are removed with no forward.

The result is a ``ScoredGraph`` (``values[e]``: ``m(C \\ e) - m(C)`` when ``e`` was tested, 0 for dead edges)
that is also the circuit found: ``.mask``, ``.edges``, ``.nodes``, ``.circuit`` (every kept edge has
``|score| >= tau``, so ``threshold(tau, prune=False)`` gives the same edges).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .._progress import progress as _bar
from .._render import fmt
from ..core._result import jsonable
from ._arch import layout
from ._circuit import Circuit, ScoredGraph
from ._engine import capture, patched_logits
from ._graph import CircuitError, Graph
from ._graph import graph as build_graph
from ._inputs import Metric, metric_rows, pairs, rows_per_forward

if TYPE_CHECKING:
    from ..core._model import Model


class AcdcResult(ScoredGraph):
    """ACDC's scores (a ``ScoredGraph``) and the circuit it kept (``.mask``, ``.edges``, ``.nodes``, ``.circuit``)."""

    def __init__(self, graph: Graph, scores: torch.Tensor, mask: torch.Tensor, info: dict[str, Any]):
        super().__init__(graph, scores, "acdc", info)
        self.mask = mask.bool().cpu()

    @property
    def circuit(self) -> Circuit:
        return Circuit(self.graph, self.mask, self.values, "acdc")

    @property
    def edges(self) -> list[str]:
        return self.circuit.edges

    @property
    def nodes(self) -> list[str]:
        return self.circuit.nodes

    def __len__(self) -> int:
        return int(self.mask.sum())

    def __contains__(self, edge: str) -> bool:
        return edge in self.circuit

    def to_dict(self) -> dict[str, Any]:
        """The kept circuit's MIB JSON (``in_graph`` from ``mask``, every edge's score), ``method`` and ``info``."""
        return {"method": self.method, "info": jsonable(self.info), **self.circuit.to_dict()}

    def to_html(self, n: int = 200) -> str:
        """A self-contained page: the kept circuit (``n`` is accepted for ``ScoredGraph``'s signature)."""
        note = f"threshold {fmt(self.info.get('threshold', float('nan')))}, {self.info.get('forwards', '?')} forwards"
        return self.circuit.to_html(title="ACDC circuit", notes=[note])

    def save(self, path: Any) -> Any:
        """MIB circuit JSON of the kept circuit, with every edge's score."""
        return self.circuit.save(path)

    def __repr__(self) -> str:
        return (
            f"tsi.circuits.AcdcResult(tau={self.info['threshold']:.4g}, {len(self)} of {len(self.graph.edges)} "
            f"edges kept, {self.info['forwards']} forwards)"
        )


def stages(g: Graph) -> list[list[int]]:
    """Destination indices in ACDC's visiting order: logits, then per layer (last first) the MLP, then q/k/v."""
    out = [[len(g.dests) - 1]]
    for layer in reversed(range(g.n_layers)):
        idx = g.dest_index(layer)
        out.append(idx["m"])
        out.append(idx["q"] + idx["k"] + idx["v"])
    return out


class _Evaluator:
    """Mean metric over every prompt group of a batch of circuits (rows of a ``[K, E]`` bool mask)."""

    def __init__(
        self, model: Model, g: Graph, clean: Any, corrupt: Any, metric: Metric, batch_size: int | None
    ):
        self.model, self.g, self.metric = model, g, metric
        self.lay = layout(model, g)
        self.groups = []
        for c, k in pairs(model, clean, corrupt):
            ref, _ = capture(model, self.lay, k)
            self.groups.append((c, ref))
        self.total = sum(c.shape[0] for c, _ in self.groups)
        n, p = max(c.shape[0] for c, _ in self.groups), max(c.shape[1] for c, _ in self.groups)
        self.size = batch_size or rows_per_forward(self.lay, n, p)
        self.forwards = len(self.groups)  # one corrupt capture per prompt group; the rest are batched patches
        self.rows = 0

    def __call__(self, masks: torch.Tensor) -> torch.Tensor:
        g = self.g
        out = torch.zeros(masks.shape[0])
        for start in range(0, masks.shape[0], self.size):
            block = masks[start : start + self.size]
            A = torch.zeros(block.shape[0], len(g.sources), len(g.dests))
            A[:, g.edge_src, g.edge_dst] = (~block.bool()).float()
            for c, ref in self.groups:
                n = c.shape[0]
                m = metric_rows(self.metric, patched_logits(self.model, self.lay, c, ref, A), n)
                out[start : start + block.shape[0]] += m.sum(dim=1)
                self.forwards += 1
            self.rows += block.shape[0]
        return out / self.total


def acdc(
    model: Model,
    clean: Any,
    corrupt: Any,
    metric: Metric,
    threshold: float | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> AcdcResult:
    """ACDC with threshold ``tau`` in metric units (None: 1% of ``|m(M) - m(empty)|``); see the module docs."""
    if threshold is not None and (not isinstance(threshold, (int, float)) or threshold < 0):
        raise CircuitError(f"threshold must be a non-negative number in metric units, not {threshold!r}")
    g = build_graph(model)
    ev = _Evaluator(model, g, clean, corrupt, metric, batch_size)
    E = len(g.edges)
    mask = torch.ones(E, dtype=torch.bool)
    scores = torch.zeros(E)
    tested = torch.zeros(E, dtype=torch.bool)
    into: dict[int, list[int]] = {}
    for e, d in enumerate(g.edge_dst.tolist()):
        into.setdefault(d, []).append(e)
    src_node = [g.sources[int(s)] for s in g.edge_src]
    first = ev(torch.stack([mask, torch.zeros(E, dtype=torch.bool)]))
    m_full, m_empty = float(first[0]), float(first[1])
    tau = 0.01 * abs(m_full - m_empty) if threshold is None else float(threshold)
    m_cur, dead = m_full, 0
    order = stages(g)
    with _bar(total=len(order), desc="acdc", unit="stage", enabled=progress) as bar:
        for i, stage in enumerate(order):
            sending = {src_node[e] for e in mask.nonzero().flatten().tolist()}
            cands = []
            for d in stage:
                live = g.dests[d] == "logits" or any(n in sending for n in g.dest_nodes(g.dests[d]))
                for e in into.get(d, []):
                    if not mask[e]:
                        continue
                    if live:
                        cands.append(e)
                    else:
                        mask[e] = False
                        dead += 1
            if cands:
                rows = mask[None].repeat(len(cands) + (i > 0), 1)
                off = int(i > 0)  # after the first stage, row 0 re-measures the current circuit
                rows[torch.arange(len(cands)) + off, torch.tensor(cands)] = False
                m = ev(rows)
                if off:
                    m_cur = float(m[0])
                eff = m[off:] - m_cur
                idx = torch.tensor(cands)
                scores[idx] = eff
                tested[idx] = True
                mask[idx[eff.abs() < tau]] = False
            bar.update(1)
    m_final = float(ev(mask[None])[0])
    info = {
        "threshold": tau,
        "prompts": ev.total,
        "forwards": ev.forwards,
        "rows": ev.rows,
        "one_per_edge": E,
        "edges_tested": int(tested.sum()),
        "dead_edges": dead,
        "kept": int(mask.sum()),
        "m_full": m_full,
        "m_empty": m_empty,
        "m_circuit": m_final,
        "faithfulness": (m_final - m_empty) / (m_full - m_empty) if abs(m_full - m_empty) > 1e-12 else None,
    }
    return AcdcResult(g, scores, mask, info)
