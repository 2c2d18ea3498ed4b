"""Detectors built on the trusted data's mean and covariance: Mahalanobis, spectral signatures, QUE.

Each works on one site's features ``x [n, d]``; ``fit`` sees trusted rows only. Spectral signatures and QUE
score a *set*: their scores depend on the other rows scored in the same call (they look for a direction along
which the scored set departs from the trusted data), so score normal and anomalous inputs together.
"""

from __future__ import annotations

from typing import Any

import torch


class SiteDetector:
    """One site's detector: ``fit(x, y)``, ``score(x) -> [n]``, ``state()``/``load_state()`` (tensors only)."""

    name = ""
    needs_labels = False
    set_level = False

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.tensors: dict[str, torch.Tensor] = {}

    def fit(self, x: torch.Tensor, y: torch.Tensor | None = None, progress: bool = False) -> None:
        raise NotImplementedError

    def score(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def state(self) -> dict[str, torch.Tensor]:
        return dict(self.tensors)

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = dict(tensors)


class Mahalanobis(SiteDetector):
    """Squared Mahalanobis distance to the trusted mean; the covariance is shrunk towards
    ``(trace / d) * I`` by ``shrinkage`` (default 0.05) so that it stays invertible with few rows."""

    name = "mahalanobis"

    def fit(self, x, y=None, progress=False):
        x = x.double()
        mean = x.mean(0)
        xc = x - mean
        cov = xc.T @ xc / max(1, len(x) - 1)
        lam = float(self.options.get("shrinkage", 0.05))
        d = cov.shape[0]
        cov = (1 - lam) * cov + lam * (cov.trace() / d).clamp_min(1e-12) * torch.eye(d, dtype=cov.dtype)
        evals, evecs = torch.linalg.eigh(cov)
        whiten = evecs * evals.clamp_min(1e-12).rsqrt()  # [d, d]: z = (x - mean) @ whiten
        self.tensors = {"mean": mean.float(), "whiten": whiten.float()}

    def whitened(self, x: torch.Tensor) -> torch.Tensor:
        return (x.double() - self.tensors["mean"].double()) @ self.tensors["whiten"].double()

    def score(self, x):
        return self.whitened(x).pow(2).sum(-1).float()


class Spectral(Mahalanobis):
    """Spectral signatures (Tran et al. 2018) in the trusted-whitened space: the squared projection of each
    row on the top ``k`` (default 1) right singular vectors of the scored set."""

    name = "spectral"
    set_level = True

    def score(self, x):
        z = self.whitened(x)
        if len(z) < 2:
            return z.pow(2).sum(-1).float()
        k = int(self.options.get("k", 1))
        _, _, vh = torch.linalg.svd(z - z.mean(0), full_matrices=False)
        return (z @ vh[:k].T).pow(2).sum(-1).float()


class QUE(Mahalanobis):
    """Quantum entropy scoring (Jain et al. 2020): ``z' Q z`` with ``Q = exp(alpha (S - I) / ||S - I||)``
    (trace-normalised), ``S`` the scored set's covariance in the trusted-whitened space; ``alpha`` default 4."""

    name = "que"
    set_level = True

    def score(self, x):
        z = self.whitened(x)
        if len(z) < 2:
            return z.pow(2).sum(-1).float()
        s = z.T @ z / len(z) - torch.eye(z.shape[1], dtype=z.dtype)
        norm = torch.linalg.matrix_norm(s, ord=2).clamp_min(1e-12)
        q = torch.linalg.matrix_exp(float(self.options.get("alpha", 4.0)) * s / norm)
        q = q / q.trace()
        return ((z @ q) * z).sum(-1).float() * z.shape[1]
