"""Circuits (a set of edges) and scored graphs (a score per edge), with MIB's ways of choosing a circuit.

``ScoredGraph.top(n=)``/``top(frac=)`` keeps the highest-scoring edges (by ``|score|`` unless
``absolute=False``), ``threshold(tau)`` those scoring at least ``tau``, and ``greedy(n)`` grows a circuit
backwards from the logits, each time adding the best edge into a node already in the circuit (MIB's
``apply_topn``/``apply_greedy``). All three prune by default: an edge stays only on a path from ``input`` to
``logits``. Files are MIB circuit JSON: ``{"cfg", "nodes": {name: {"in_graph"}}, "edges": {"src->dst":
{"score", "in_graph"}}}``.
"""

from __future__ import annotations

import heapq
import json
import math
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write
from ..core._result import jsonable
from ._graph import CircuitError, Graph


class Circuit:
    """A subset of a graph's edges (``mask[e]`` True = in the circuit), with the scores it was chosen by."""

    def __init__(
        self, graph: Graph, mask: torch.Tensor, scores: torch.Tensor | None = None, method: str | None = None
    ):
        self.graph = graph
        self.mask = mask.bool().cpu()
        self.scores = None if scores is None else scores.detach().float().cpu()
        self.method = method

    @property
    def edges(self) -> list[str]:
        """Edge names in the circuit, in graph order."""
        return [self.graph.edges[i] for i in self.mask.nonzero().flatten().tolist()]

    @property
    def nodes(self) -> list[str]:
        """Nodes touched by the circuit's edges, in graph order."""
        used: set[str] = set()
        g = self.graph
        for i in self.mask.nonzero().flatten().tolist():
            used.add(g.sources[int(g.edge_src[i])])
            used.update(g.dest_nodes(g.dests[int(g.edge_dst[i])]))
        return [n for n in g.nodes if n in used]

    def __len__(self) -> int:
        return int(self.mask.sum())

    def __contains__(self, edge: str) -> bool:
        i = self.graph.index.get(edge)
        return i is not None and bool(self.mask[i])

    def complement(self) -> Circuit:
        return Circuit(self.graph, ~self.mask, self.scores, self.method)

    @classmethod
    def from_edges(cls, graph: Graph, edges: list[str]) -> Circuit:
        mask = torch.zeros(len(graph.edges), dtype=torch.bool)
        for e in edges:
            if e not in graph.index:
                raise CircuitError(
                    f"{e!r} is not an edge of this graph; edges look like 'a0.h1->m3' or 'input->a0.h1<q>'"
                )
            mask[graph.index[e]] = True
        return cls(graph, mask)

    # ---- files --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        g = self.graph
        in_nodes = set(self.nodes)
        scores = self.scores.tolist() if self.scores is not None else [None] * len(g.edges)
        return {
            "cfg": g.cfg(),
            "nodes": {n: {"in_graph": n in in_nodes} for n in g.nodes},
            "edges": {
                e: {"score": _num(s), "in_graph": bool(m)}
                for e, s, m in zip(g.edges, scores, self.mask.tolist(), strict=True)
            },
        }

    def save(self, path: str | Path) -> Path:
        """Write MIB circuit JSON."""
        return atomic_write(path, json.dumps(self.to_dict()))

    def to_html(self, curve: Any = None, title: str = "Circuit", notes: list[str] | None = None) -> str:
        """A self-contained page: the circuit (layers down the page) and, if given, its faithfulness curve."""
        from ._html import circuit_html

        return circuit_html(self, curve=curve, title=title, notes=notes)

    def __repr__(self) -> str:
        return f"tsi.circuits.Circuit({len(self)} of {len(self.graph.edges)} edges, {len(self.nodes)} nodes)"


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def load(path: str | Path) -> Circuit:
    """Read an MIB circuit JSON file (ours or MIB's) into a ``Circuit`` with its scores."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CircuitError(
            f"cannot read circuit file {str(path)!r} ({e}); give an MIB circuit JSON file"
        ) from None
    if not isinstance(data, dict) or "cfg" not in data or "edges" not in data:
        raise CircuitError(f"{str(path)!r} is not an MIB circuit file: it needs 'cfg' and 'edges' keys")
    g = Graph.from_cfg(data["cfg"])
    mask = torch.zeros(len(g.edges), dtype=torch.bool)
    scores = torch.full((len(g.edges),), float("nan"))
    unknown = [e for e in data["edges"] if e not in g.index]
    if unknown:
        raise CircuitError(f"{str(path)!r} names {len(unknown)} edges this graph lacks, e.g. {unknown[0]!r}")
    for e, v in data["edges"].items():
        i = g.index[e]
        mask[i] = bool(v.get("in_graph", False))
        if v.get("score") is not None:
            scores[i] = float(v["score"])
    return Circuit(g, mask, scores)


class ScoredGraph:
    """A score for every edge of ``graph`` (``scores[e]``: estimated change of the metric when edge e is patched)."""

    def __init__(self, graph: Graph, scores: torch.Tensor, method: str, info: dict[str, Any] | None = None):
        self.graph = graph
        self.values = scores.detach().float().cpu()
        self.method = method
        self.info = dict(info or {})

    @property
    def scores(self) -> dict[str, float]:
        """Edge name -> score."""
        return dict(zip(self.graph.edges, self.values.tolist(), strict=True))

    def _key(self, absolute: bool) -> torch.Tensor:
        v = torch.nan_to_num(self.values, nan=-math.inf)
        return v.abs() if absolute else v

    def top(
        self, n: int | None = None, frac: float | None = None, absolute: bool = True, prune: bool = True
    ) -> Circuit:
        """The ``n`` (or ``frac`` of all) highest-scoring edges."""
        k = _count(len(self.graph.edges), n, frac)
        mask = torch.zeros(len(self.graph.edges), dtype=torch.bool)
        if k:
            mask[torch.topk(self._key(absolute), k).indices] = True
        return self._circuit(mask, prune)

    def threshold(self, tau: float, absolute: bool = True, prune: bool = True) -> Circuit:
        """Every edge whose score (``|score|`` by default) is at least ``tau``."""
        return self._circuit(self._key(absolute) >= tau, prune)

    def greedy(
        self, n: int | None = None, frac: float | None = None, absolute: bool = True, prune: bool = True
    ) -> Circuit:
        """Grow from the logits: repeatedly add the best edge whose destination node is already in the circuit."""
        g = self.graph
        k = _count(len(g.edges), n, frac)
        key = self._key(absolute).tolist()
        into: dict[str, list[int]] = {}
        for e in range(len(g.edges)):
            for node in g.dest_nodes(g.dests[int(g.edge_dst[e])]):
                into.setdefault(node, []).append(e)
        mask = torch.zeros(len(g.edges), dtype=torch.bool)
        heap: list[tuple[float, int]] = []
        seen: set[str] = set()

        def open_node(node: str) -> None:
            if node not in seen:
                seen.add(node)
                for e in into.get(node, []):
                    heapq.heappush(heap, (-key[e], e))

        open_node("logits")
        chosen = 0
        while heap and chosen < k:
            _, e = heapq.heappop(heap)
            if mask[e]:
                continue
            mask[e] = True
            chosen += 1
            open_node(g.sources[int(g.edge_src[e])])
        return self._circuit(mask, prune)

    def _circuit(self, mask: torch.Tensor, prune: bool) -> Circuit:
        return Circuit(self.graph, prune_edges(self.graph, mask) if prune else mask, self.values, self.method)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "info": jsonable(self.info),
            **Circuit(self.graph, torch.ones(len(self.graph.edges)), self.values).to_dict(),
        }

    def to_html(self, n: int = 200) -> str:
        """A self-contained page: the ``n`` edges with the largest ``|score|`` drawn as a circuit."""
        k = min(n, len(self.graph.edges))
        note = f"The {k} edges with the largest |score| (of {len(self.graph.edges)}), unpruned."
        return self.top(n=k, prune=False).to_html(title=f"Edge scores: {self.method}", notes=[note])

    def save(self, path: str | Path) -> Path:
        """MIB circuit JSON with every edge's score (``in_graph`` true for all)."""
        return Circuit(self.graph, torch.ones(len(self.graph.edges)), self.values, self.method).save(path)

    def __repr__(self) -> str:
        return f"tsi.circuits.ScoredGraph({self.method}, {len(self.graph.edges)} edges)"


def _count(total: int, n: int | None, frac: float | None) -> int:
    if (n is None) == (frac is None):
        raise CircuitError(
            "give exactly one of n= (an edge count) or frac= (a fraction of all edges, e.g. 0.01)"
        )
    if frac is not None:
        if not 0 <= frac <= 1:
            raise CircuitError(f"frac must be between 0 and 1, not {frac}")
        return int(frac * total)
    if n is None or n < 0:  # None was refused above, with frac None too
        raise CircuitError(f"n must be a non-negative edge count, not {n}")
    return min(int(n), total)


def prune_edges(g: Graph, mask: torch.Tensor) -> torch.Tensor:
    """Keep only the edges on a path from ``input`` to ``logits`` inside ``mask``."""
    mask = mask.bool().clone()
    src = [g.sources[int(i)] for i in g.edge_src]
    dnodes = [g.dest_nodes(g.dests[int(j)]) for j in g.edge_dst]
    on = mask.nonzero().flatten().tolist()
    reach = {"input"}  # forward from the input, in topological (graph) order
    order = {n: i for i, n in enumerate(g.nodes)}
    by_src: dict[str, list[int]] = {}
    for e in on:
        by_src.setdefault(src[e], []).append(e)
    for node in g.nodes:
        if node in reach:
            for e in by_src.get(node, []):
                reach.update(dnodes[e])
    back = {"logits"}
    for node in sorted(g.nodes, key=lambda n: -order[n]):
        if node in back:
            continue
        if any(any(d in back for d in dnodes[e]) for e in by_src.get(node, [])):
            back.add(node)
    for e in on:
        if src[e] not in reach or not any(d in back for d in dnodes[e]):
            mask[e] = False
    return mask
