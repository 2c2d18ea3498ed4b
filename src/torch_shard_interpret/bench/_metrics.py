"""Scores shared by the tasks: feature recovery (mean max cosine, MCC) and AUROC of a ranking.

- ``mean_max_cosine(true, found)``: for each true direction, the best cosine with any found direction, averaged.
- ``mcc(true, found)``: SynthSAEBench's mean correlation coefficient, the mean ``|cos|`` over a one-to-one
  (Hungarian) matching of true directions to found ones, so one found direction cannot explain two true ones.
- ``auroc(scores, truth)``: the probability that a true component outranks a decoy (ties count half);
  ``scores`` is any ``{node_name: score}`` mapping (patching effects, DLA, ``graph.scores`` of circuits).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from ..core._errors import InputError


def cosine_matrix(true: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
    """``[n_true, n_found]`` cosines between the rows of ``true`` and ``found`` (same width)."""
    if true.ndim != 2 or found.ndim != 2 or true.shape[1] != found.shape[1]:
        raise InputError(
            f"directions must be two matrices [n, d] of the same width, not {list(true.shape)} and {list(found.shape)}"
        )
    true, found = true.detach(), found.detach()
    a = true.double() / true.double().norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = found.double() / found.double().norm(dim=1, keepdim=True).clamp_min(1e-12)
    return a @ b.T


def mean_max_cosine(true: torch.Tensor, found: torch.Tensor) -> float:
    """Mean over true directions of the largest cosine with a found direction (1.0: every one recovered)."""
    return float(cosine_matrix(true, found).max(dim=1).values.mean())


def mcc(true: torch.Tensor, found: torch.Tensor) -> float:
    """Mean ``|cos|`` over the best one-to-one matching of true to found directions (SynthSAEBench's MCC)."""
    c = cosine_matrix(true, found).abs()
    rows, cols = linear_assignment((-c).tolist())
    return float(sum(c[r, k] for r, k in zip(rows, cols, strict=True)) / c.shape[0])


def linear_assignment(cost: list[list[float]]) -> tuple[list[int], list[int]]:
    """Minimum-cost matching of every row to a distinct column (needs ``rows <= columns``).

    The Hungarian method with potentials, O(rows^2 * columns); returns ``(rows, columns)`` matched."""
    n, m = len(cost), len(cost[0]) if cost else 0
    if n > m:
        raise InputError(f"linear_assignment needs at most as many rows as columns, not {n} > {m}")
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    match = [0] * (m + 1)  # match[j]: the row (1-based) given column j; 0 = free
    way = [0] * (m + 1)
    for i in range(1, n + 1):
        match[0], j0 = i, 0
        minv, used = [inf] * (m + 1), [False] * (m + 1)
        while match[j0] != 0:
            used[j0] = True
            i0, delta, j1 = match[j0], inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = cost[i0 - 1][j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[match[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
        while j0:
            j1 = way[j0]
            match[j0] = match[j1]
            j0 = j1
    pairs = sorted((match[j] - 1, j - 1) for j in range(1, m + 1) if match[j])
    return [r for r, _ in pairs], [c for _, c in pairs]


def auroc(scores: Mapping[str, float], truth: Iterable[str], *, absolute: bool = True) -> float:
    """Probability that a true component scores above a decoy (ties: one half).

    ``scores``: ``{name: score}`` for every candidate; ``truth``: the names of the true components;
    ``absolute``: rank by ``|score|`` (effects of either sign count), the usual choice for patching."""
    true_set = set(truth)
    missing = true_set - set(scores)
    if missing:
        raise InputError(f"the scores have no entry for the true component(s) {sorted(missing)}")
    val = {k: (abs(float(s)) if absolute else float(s)) for k, s in scores.items()}
    pos = [s for k, s in val.items() if k in true_set]
    neg = [s for k, s in val.items() if k not in true_set]
    if not pos or not neg:
        raise InputError("auroc needs at least one true component and one decoy among the scores")
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))
