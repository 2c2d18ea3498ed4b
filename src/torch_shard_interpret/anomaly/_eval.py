"""AUROC and average precision of a detector on normal vs anomalous inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .._render import esc, fmt, hbar_rows, standalone
from ._features import AnomalyError


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (ties count one half); ``labels`` 1 = anomalous."""
    s, y = scores.double().flatten(), labels.bool().flatten()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise AnomalyError("AUROC needs at least one normal and one anomalous input")
    order = s.argsort()
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, len(s) + 1, dtype=s.dtype)
    for v in s.unique():  # average ranks over ties
        tie = s == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Average precision (area under the precision-recall curve, step-wise as in sklearn)."""
    s, y = scores.double().flatten(), labels.double().flatten()
    order = s.argsort(descending=True, stable=True)
    y = y[order]
    hits = y.cumsum(0)
    precision = hits / torch.arange(1, len(y) + 1, dtype=y.dtype)
    return float((precision * y).sum() / y.sum().clamp_min(1))


@dataclass
class EvalResult:
    """Scores of one detector on normal (label 0) and anomalous (label 1) inputs."""

    detector: str
    auroc: float
    ap: float
    scores: torch.Tensor
    labels: torch.Tensor
    site_auroc: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"detector": self.detector, "auroc": self.auroc, "ap": self.ap,
                "n_normal": int((self.labels == 0).sum()), "n_anomalous": int((self.labels == 1).sum()),
                "site_auroc": self.site_auroc}  # fmt: skip

    def to_html(self, page: bool = False) -> str:
        rows = hbar_rows([(s, v, fmt(v)) for s, v in self.site_auroc.items()], vmax=1.0)
        body = (
            f"<h2>Anomaly detector: {esc(self.detector)}</h2><p>AUROC {fmt(self.auroc)}, AP {fmt(self.ap)} "
            f"({int((self.labels == 0).sum())} normal, {int((self.labels == 1).sum())} anomalous)</p>"
            f"<table><tr><th>site</th><th>AUROC of the site alone</th><th></th></tr>{rows}</table>"
        )
        return standalone(f"anomaly: {self.detector}", body) if page else body


def _cat(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {s: torch.cat([a[s], b[s]]) for s in a}


def evaluate(det: Any, normal: Any, anomalous: Any, *, batch_size: int = 32) -> EvalResult:
    """Score ``normal`` and ``anomalous`` inputs together (one set) and return AUROC and AP."""
    a, b = det.features(normal, batch_size=batch_size), det.features(anomalous, batch_size=batch_size)
    return evaluate_features(det, a, b)


def evaluate_features(
    det: Any, normal: dict[str, torch.Tensor], anomalous: dict[str, torch.Tensor]
) -> EvalResult:
    feats = _cat(normal, anomalous)
    n0, n1 = len(next(iter(normal.values()))), len(next(iter(anomalous.values())))
    labels = torch.cat([torch.zeros(n0), torch.ones(n1)])
    scores = det.score_features(feats)
    per_site = {s: auroc(v, labels) for s, v in det.score_features(feats, per_site=True).items()}
    return EvalResult(
        det.kind, auroc(scores, labels), average_precision(scores, labels), scores, labels, per_site
    )
