"""Faithfulness of circuits: ``f(C) = (m(C) - m(empty)) / (m(M) - m(empty))``, curves with CPR/CMD, isolation.

``m(C)`` runs the model with every edge outside ``C`` patched from a reference: the counterfactual run
(``ablation="patch"``, MIB's default), the mean of the counterfactual run's source activations over prompts
and positions (``"mean"``) or zero (``"zero"``). ``m(M)`` is the clean model, ``m(empty)`` the model with every
edge patched. Many circuits are evaluated in one batched forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .._render import esc, fmt, key_values, standalone
from ..core._result import jsonable
from ._arch import layout
from ._circuit import Circuit, ScoredGraph
from ._engine import Sources, capture, patched_logits
from ._graph import CircuitError, Graph
from ._inputs import Metric, metric_rows, pairs, rows_per_forward

if TYPE_CHECKING:
    from ..core._model import Model

ABLATIONS = ("patch", "mean", "zero")
FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)  # MIB's edge fractions


class Faithfulness(float):
    """A faithfulness value (a float) that also names how it was measured."""

    ablation: str
    circuit_metric: float
    full_metric: float
    empty_metric: float

    def __new__(cls, value: float, ablation: str, m_c: float, m_full: float, m_empty: float):
        obj = super().__new__(cls, value)
        obj.ablation, obj.circuit_metric, obj.full_metric, obj.empty_metric = ablation, m_c, m_full, m_empty
        return obj

    def to_dict(self) -> dict[str, Any]:
        return {
            "faithfulness": float(self),
            "ablation": self.ablation,
            "m_circuit": self.circuit_metric,
            "m_full": self.full_metric,
            "m_empty": self.empty_metric,
        }

    def to_html(self) -> str:
        """A self-contained page: the value and the three metrics it comes from."""
        return _page("Faithfulness", [
            ("faithfulness f(C)", fmt(float(self))), ("m(circuit)", fmt(self.circuit_metric)),
            ("m(full model)", fmt(self.full_metric)), ("m(empty circuit)", fmt(self.empty_metric)),
            ("ablation", self.ablation),
        ])  # fmt: skip

    def __repr__(self) -> str:
        return f"Faithfulness({float(self):.4f}, ablation={self.ablation!r})"


def reference(model: Model, lay: Any, clean: torch.Tensor, corrupt: torch.Tensor, ablation: str) -> Sources:
    if ablation not in ABLATIONS:
        raise CircuitError(f"ablation must be one of {', '.join(ABLATIONS)}, not {ablation!r}")
    corr, _ = capture(model, lay, corrupt)
    if ablation == "patch":
        return corr
    if ablation == "zero":
        return corr.map(torch.zeros_like)
    n, p = clean.shape
    return corr.map(lambda t: t.mean(dim=(0, 1), keepdim=True).expand(n, p, *t.shape[2:]).contiguous())


def circuit_metrics(
    model: Model,
    masks: torch.Tensor,
    g: Graph,
    clean: Any,
    corrupt: Any,
    metric: Metric,
    ablation: str = "patch",
    batch_size: int | None = None,
) -> tuple[torch.Tensor, float]:
    """``([K], m(M))``: the mean metric over prompts of each circuit ``masks[k]`` (``[K, E]`` bool), and the clean one."""
    lay = layout(model, g)
    groups = pairs(model, clean, corrupt)
    total = sum(c.shape[0] for c, _ in groups)
    out = torch.zeros(masks.shape[0])
    full = 0.0
    for c, k in groups:
        n, p = c.shape
        ref = reference(model, lay, c, k, ablation)
        _, logits = capture(model, lay, c)
        full += float(metric_rows(metric, logits, n).sum())
        size = batch_size or rows_per_forward(lay, n, p)
        for start in range(0, masks.shape[0], size):
            block = masks[start : start + size]
            A = torch.zeros(block.shape[0], len(g.sources), len(g.dests))
            A[:, g.edge_src, g.edge_dst] = (~block.bool()).float()
            m = metric_rows(metric, patched_logits(model, lay, c, ref, A), n)
            out[start : start + block.shape[0]] += m.sum(dim=1)
    return out / total, full / total


def _check(model: Model, circuit: Circuit) -> Graph:
    from ._graph import graph as build_graph

    g = build_graph(model)
    if g.edges != circuit.graph.edges:
        raise CircuitError(f"the circuit's graph ({circuit.graph!r}) does not match this model's ({g!r})")
    return g


def _normalise(m: float, full: float, empty: float) -> float:
    den = full - empty
    if abs(den) < 1e-12:
        raise CircuitError(
            "the clean and fully patched models give the same metric, so faithfulness is undefined; choose prompts "
            "whose counterfactual changes the metric"
        )
    return (m - empty) / den


def faithfulness(
    model: Model, circuit: Circuit, clean: Any, corrupt: Any, metric: Metric, ablation: str = "patch"
) -> Faithfulness:
    """``(m(C) - m(empty)) / (m(M) - m(empty))``: 1 = the circuit alone restores the model, 0 = nothing."""
    g = _check(model, circuit)
    masks = torch.stack([circuit.mask, torch.zeros(len(g.edges), dtype=torch.bool)])
    (m_c, m_e), full = circuit_metrics(model, masks, g, clean, corrupt, metric, ablation)
    return Faithfulness(_normalise(float(m_c), full, float(m_e)), ablation, float(m_c), full, float(m_e))


@dataclass
class FaithfulnessCurve:
    """Faithfulness at MIB's edge fractions, and the areas MIB reports."""

    fractions: list[float]
    values: list[float]  # top edges by signed score (CPR's curve)
    abs_values: list[float]  # top edges by |score| (CMD's curve)
    cpr: float  # area under f(k): higher is better
    cmd: float  # area under |1 - f(k)|: 0 is best
    ablation: str = "patch"
    edges: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dict(self.__dict__))

    def to_html(self) -> str:
        """A self-contained page: the two curves and their areas."""
        return _page("Faithfulness curve", [
            ("CPR (area under f, higher is better)", fmt(self.cpr)),
            ("CMD (area under |1 - f|, 0 is best)", fmt(self.cmd)), ("ablation", self.ablation),
        ], self.chart())  # fmt: skip

    def chart(self) -> str:
        from .._render import line_chart

        return line_chart(
            [
                ("signed (CPR)", self.fractions, self.values),
                ("|score| (CMD)", self.fractions, self.abs_values),
            ],
            x_title="fraction of edges",
            y_title="faithfulness",
            log_x=True,
            hlines=[(1.0, "full model")],
        )


def _area(x: list[float], y: list[float]) -> float:
    return sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(len(x) - 1))


def faithfulness_curve(
    model: Model,
    graph: ScoredGraph,
    clean: Any,
    corrupt: Any,
    metric: Metric,
    ablation: str = "patch",
    fractions: tuple[float, ...] = FRACTIONS,
    greedy: bool = False,
) -> FaithfulnessCurve:
    """f at each fraction of edges (``int(frac * n_edges)`` top edges, pruned), CPR and CMD as MIB computes them."""
    g = graph.graph
    choose = graph.greedy if greedy else graph.top
    masks = [choose(n=int(f * len(g.edges)), absolute=False).mask for f in fractions]
    masks += [choose(n=int(f * len(g.edges)), absolute=True).mask for f in fractions]
    masks.append(torch.zeros(len(g.edges), dtype=torch.bool))
    m, full = circuit_metrics(model, torch.stack(masks), g, clean, corrupt, metric, ablation)
    empty = float(m[-1])
    f = [_normalise(float(v), full, empty) for v in m[:-1]]
    signed, absolute = f[: len(fractions)], f[len(fractions) :]
    xs = list(fractions)
    return FaithfulnessCurve(
        xs,
        signed,
        absolute,
        _area(xs, signed),
        _area(xs, [abs(1 - v) for v in absolute]),
        ablation,
        [int(x.sum()) for x in masks[: len(fractions)]],
    )


@dataclass
class Isolation:
    """A circuit alone (everything else ablated) vs in context (the circuit ablated, the rest kept)."""

    alone: float  # f(C)
    complement: float  # f(M \\ C): what the rest does without the circuit
    in_context: float  # 1 - f(M \\ C): the share of the model's behaviour lost by ablating the circuit
    disagree: bool
    ablation: str

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dict(self.__dict__))

    def to_html(self) -> str:
        """A self-contained page: the circuit alone, its complement and whether they disagree."""
        return _page("Circuit isolation", [
            ("f(C): the circuit alone", fmt(self.alone)), ("f(M \\ C): the rest alone", fmt(self.complement)),
            ("1 - f(M \\ C): lost by ablating the circuit", fmt(self.in_context)),
            ("disagree", "yes" if self.disagree else "no"), ("ablation", self.ablation),
        ])  # fmt: skip


def _page(title: str, rows: list[tuple[str, str]], extra: str = "") -> str:
    return standalone(title, f"<h1>{esc(title)}</h1>{key_values(rows)}{extra}")


def isolation(
    model: Model,
    circuit: Circuit,
    clean: Any,
    corrupt: Any,
    metric: Metric,
    ablation: str = "patch",
    tolerance: float = 0.25,
) -> Isolation:
    """Flag a circuit that looks sufficient alone but whose removal barely matters in context (or vice versa):
    ``disagree`` when ``|f(C) - (1 - f(M \\ C))| > tolerance``."""
    g = _check(model, circuit)
    masks = torch.stack([circuit.mask, ~circuit.mask, torch.zeros(len(g.edges), dtype=torch.bool)])
    m, full = circuit_metrics(model, masks, g, clean, corrupt, metric, ablation)
    empty = float(m[2])
    alone, comp = _normalise(float(m[0]), full, empty), _normalise(float(m[1]), full, empty)
    return Isolation(alone, comp, 1 - comp, abs(alone - (1 - comp)) > tolerance, ablation)
