"""Linear probes on a feature matrix: multinomial logistic regression and ridge regression.

Features are standardised with the training split's mean and standard deviation; the weights reported
(``ProbeResult.weights``) are mapped back to the raw activation space, so ``acts @ weights.T + bias`` is the
probe's output on raw activations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .._render import esc, standalone
from ..core._errors import InputError
from ..core._result import fields_dict


@dataclass
class ProbeResult:
    """A linear probe fitted at one site, with its validation score and a control task."""

    site: str
    task: str
    """``"classification"`` or ``"regression"``."""
    score: float
    """Validation accuracy (classification) or R^2 (regression)."""
    control_score: float
    """The same probe, same split, trained and scored on shuffled labels (a control task that no input
    property can explain)."""
    weights: torch.Tensor
    """``[n_classes, d]`` (classification) or ``[d]`` (regression), in the raw activation space."""
    bias: torch.Tensor
    """``[n_classes]`` or ``[]``."""
    classes: list[Any] = field(default_factory=list)
    """The label of each class row (classification)."""
    chance: float = float("nan")
    """Validation accuracy of always predicting the most frequent training class (classification)."""
    train_score: float = float("nan")
    n_train: int = 0
    n_val: int = 0
    position: Any = -1

    @property
    def accuracy(self) -> float | None:
        """Validation accuracy (None for regression: see ``score``, the R^2)."""
        return self.score if self.task == "classification" else None

    @property
    def control_accuracy(self) -> float | None:
        """Validation accuracy on the control task (None for regression: see ``control_score``)."""
        return self.control_score if self.task == "classification" else None

    @property
    def selectivity(self) -> float:
        """``score - control_score``: how much better the probe does than on labels it cannot explain."""
        return self.score - self.control_score

    def decision(self, acts: torch.Tensor) -> torch.Tensor:
        """Raw outputs: ``[n, n_classes]`` logits or ``[n]`` predictions for activations ``[n, d]`` (or ``[d]``)."""
        x = _as_matrix(acts, self.weights.shape[-1])
        w, b = self.weights.to(x.dtype), self.bias.to(x.dtype)
        return x @ (w if w.ndim == 1 else w.T) + b

    def predict_proba(self, acts: torch.Tensor) -> torch.Tensor:
        """``[n, n_classes]`` class probabilities (classification)."""
        if self.task != "classification":
            raise InputError("predict_proba is for classification probes; use predict for regression")
        return torch.softmax(self.decision(acts), -1)

    def predict(self, acts: torch.Tensor) -> Any:
        """Predicted labels (a list when the labels are not numbers, else a tensor) or values (regression)."""
        out = self.decision(acts)
        if self.task == "regression":
            return out
        idx = out.argmax(-1).tolist()
        labels = [self.classes[i] for i in idx]
        if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in self.classes):
            return torch.tensor(labels)
        return labels

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: every field (``weights`` and ``bias`` as lists) and the ``selectivity``."""
        return fields_dict(self, selectivity=self.selectivity)

    def to_html(self) -> str:
        """A self-contained HTML page: this probe's row of the summary table."""
        return standalone(f"Linear probe at {self.site}", summary_html({self.site: self}))

    def __repr__(self) -> str:
        name = "accuracy" if self.task == "classification" else "R^2"
        return (
            f"ProbeResult({self.site!r}, {name}={self.score:.3f}, control={self.control_score:.3f}, "
            f"selectivity={self.selectivity:.3f}, n_train={self.n_train}, n_val={self.n_val})"
        )


class ProbeResults(dict):
    """``{site: ProbeResult}`` in site order, with a compact HTML summary."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``{site: ProbeResult.to_dict()}`` in site order."""
        return {site: r.to_dict() for site, r in self.items()}

    def to_html(self) -> str:
        """A self-contained HTML page with the summary table (``summary_html``)."""
        return standalone("Linear probes", summary_html(self))

    def best(self) -> ProbeResult:
        """The site with the highest selectivity."""
        if not self:
            raise InputError("no probe results")
        return max(self.values(), key=lambda r: r.selectivity)

    def __repr__(self) -> str:
        rows = ", ".join(f"{k}: {v.score:.3f}/{v.control_score:.3f}" for k, v in self.items())
        return f"ProbeResults({{{rows}}})"


def summary_html(results: dict[str, ProbeResult]) -> str:
    """An HTML fragment (a ``<section>``, styled by the shared page CSS): site, score, control and
    selectivity per site, with bars."""
    rows = [
        "<section class='probes'><h2>Linear probes</h2>"
        "<table class='grid'><tr><th class='label'>site</th><th>score</th><th>control</th><th>selectivity</th>"
        "<th></th></tr>"
    ]
    for site, r in results.items():
        width = max(0.0, min(1.0, r.selectivity)) * 120
        bar = f"<div class='hbar' style='background:#2a6edc;width:{width:.0f}px'></div>"
        rows.append(
            f"<tr><td class='label'>{esc(site)}</td><td>{r.score:.3f}</td>"
            f"<td>{r.control_score:.3f}</td><td>{r.selectivity:.3f}</td><td style='width:125px'>{bar}</td></tr>"
        )
    task = next(iter(results.values())).task if results else ""
    note = "validation accuracy" if task == "classification" else "validation R^2"
    rows.append(
        f"</table><p class='how'>score: {note}; control: the same probe on shuffled labels.</p></section>"
    )
    return "".join(rows)


# ---- fitting --------------------------------------------------------------------------------------
def fit_logistic(x: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float = 1e-2, max_iter: int = 200):
    """Multinomial logistic regression on standardised ``x`` ``[n, d]``, class ids ``y`` ``[n]``;
    full-batch L-BFGS on mean cross-entropy + ``l2 * |W|^2 / 2``. Returns ``(W [c, d], b [c])``."""
    x = x.double()
    w = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9
    )

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w.T + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def fit_ridge(x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression in closed form on ``x`` ``[n, d]`` (standardised), ``y`` ``[n]``: minimises
    ``|x w + b - y|^2 + alpha |w|^2`` (unpenalised intercept). Returns ``(w [d], b [])``."""
    x = x.double()
    y = y.double()
    xm, ym = x.mean(0), y.mean()
    xc, yc = x - xm, y - ym
    n, d = xc.shape
    if d <= n:
        w = torch.linalg.solve(xc.T @ xc + alpha * torch.eye(d, dtype=x.dtype), xc.T @ yc)
    else:  # the dual form is cheaper when there are more features than examples
        w = xc.T @ torch.linalg.solve(xc @ xc.T + alpha * torch.eye(n, dtype=x.dtype), yc)
    return w, ym - xm @ w


def r2(pred: torch.Tensor, y: torch.Tensor) -> float:
    y = y.double()
    ss = float(((y - y.mean()) ** 2).sum())
    res = float(((pred.double() - y) ** 2).sum())
    return 1.0 - res / ss if ss > 0 else float("nan")


def fit_probe(
    acts: torch.Tensor,
    labels: Any,
    task: str = "auto",
    val_fraction: float = 0.25,
    seed: int = 0,
    l2: float = 1e-2,
    alpha: float = 1.0,
    site: str = "",
    position: Any = -1,
) -> ProbeResult:
    """Fit a probe on activations ``[n, d]`` (the part of ``tsi.probes.fit`` after harvesting)."""
    x = _as_matrix(acts, None).double()
    labels = _as_labels(labels, x.shape[0])
    task = resolve_task(task, labels)
    plan = split_plan(labels, task, val_fraction, seed)
    return _fit_split(x, labels, task, plan, l2=l2, alpha=alpha, site=site, position=position, seed=seed)


@dataclass
class _Plan:
    train: torch.Tensor
    val: torch.Tensor
    classes: list[Any]
    y: torch.Tensor  # [n] class ids (classification) or values (regression)
    y_control: torch.Tensor  # the same, shuffled


def resolve_task(task: str, labels: list[Any]) -> str:
    if task not in ("auto", "classification", "regression"):
        raise InputError(f"task must be 'auto', 'classification' or 'regression', not {task!r}")
    if task != "auto":
        if task == "regression" and not all(_is_number(v) for v in labels):
            raise InputError("task='regression' needs numeric labels")
        return task
    if all(_is_number(v) for v in labels) and any(isinstance(v, float) for v in labels):
        return "regression"
    return "classification"


def split_plan(labels: list[Any], task: str, val_fraction: float, seed: int) -> _Plan:
    n = len(labels)
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must be between 0 and 1 (exclusive), not {val_fraction}")
    g = torch.Generator().manual_seed(seed)
    if task == "classification":
        classes = sorted(set(labels), key=_sort_key)
        if len(classes) < 2:
            raise InputError(f"a classification probe needs at least 2 distinct labels, got only {classes!r}")
        index = {c: i for i, c in enumerate(classes)}
        y = torch.tensor([index[v] for v in labels])
        train, val = [], []
        for c in range(len(classes)):  # stratified: each class split in the same proportion
            idx = (y == c).nonzero().flatten()
            idx = idx[torch.randperm(len(idx), generator=g)]
            k = int(round(val_fraction * len(idx)))
            k = min(max(k, 1), len(idx) - 1) if len(idx) >= 2 else 0
            val.append(idx[:k])
            train.append(idx[k:])
        tr, va = torch.cat(train), torch.cat(val)
    else:
        classes = []
        y = torch.tensor([float(v) for v in labels], dtype=torch.float64)
        perm = torch.randperm(n, generator=g)
        k = int(round(val_fraction * n))
        va, tr = perm[:k], perm[k:]
    if len(va) < 1 or len(tr) < 2:
        raise InputError(
            f"{n} examples leave {len(tr)} for training and {len(va)} for validation at val_fraction={val_fraction}; "
            "give more examples (a few per class at least)"
        )
    y_control = y[torch.randperm(n, generator=g)]
    return _Plan(tr.sort().values, va.sort().values, classes, y, y_control)


def _fit_split(x, labels, task, plan: _Plan, l2, alpha, site, position, seed) -> ProbeResult:
    tr, va = plan.train, plan.val
    mean = x[tr].mean(0)
    std = x[tr].std(0, unbiased=False).clamp_min(1e-6)
    z = (x - mean) / std  # [n, d] standardised with the training split's statistics

    def run(y: torch.Tensor) -> tuple[float, float, torch.Tensor, torch.Tensor]:
        torch.manual_seed(seed)
        if task == "classification":
            w, b = fit_logistic(z[tr], y[tr], len(plan.classes), l2=l2)
            pred = (z @ w.T + b).argmax(-1)
            return (
                float((pred[va] == y[va]).double().mean()),
                float((pred[tr] == y[tr]).double().mean()),
                w,
                b,
            )
        w, b = fit_ridge(z[tr], y[tr], alpha=alpha)
        pred = z @ w + b
        return r2(pred[va], y[va]), r2(pred[tr], y[tr]), w, b

    score, train_score, w, b = run(plan.y)
    control, _, _, _ = run(plan.y_control)
    # back to raw activations: z @ w.T + b == x @ (w / std).T + (b - (w / std) @ mean)
    w_raw = w / std
    b_raw = b - w_raw @ mean
    chance = float("nan")
    if task == "classification":
        majority = torch.bincount(plan.y[tr], minlength=len(plan.classes)).argmax()
        chance = float((plan.y[va] == majority).double().mean())
    return ProbeResult(
        site=site, task=task, score=score, control_score=control, weights=w_raw.float(), bias=b_raw.float(),
        classes=plan.classes, chance=chance, train_score=train_score, n_train=len(tr), n_val=len(va),
        position=position,
    )  # fmt: skip


def _as_matrix(acts: Any, d: int | None) -> torch.Tensor:
    x = torch.as_tensor(acts)
    if x.ndim == 1:
        x = x.unsqueeze(0)
    if x.ndim != 2 or (d is not None and x.shape[1] != d):
        want = f"[n, {d}]" if d is not None else "[n, d]"
        raise InputError(f"activations must have shape {want}, not {list(x.shape)}")
    return x.double() if d is None else x.float()


def _as_labels(labels: Any, n: int) -> list[Any]:
    if torch.is_tensor(labels):
        labels = labels.tolist()
    elif hasattr(labels, "tolist"):  # numpy
        labels = labels.tolist()
    labels = list(labels)
    if len(labels) != n:
        raise InputError(
            f"there are {n} texts (or activation rows) but {len(labels)} labels; give one label each"
        )
    for v in labels:
        if _is_number(v) and isinstance(v, float) and math.isnan(v):
            raise InputError("a label is NaN; remove or fill missing labels")
    return labels


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _sort_key(v: Any) -> tuple[str, Any]:
    return (type(v).__name__, v) if not _is_number(v) else ("", v)
