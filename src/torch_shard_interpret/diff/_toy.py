"""A planted difference: model B is model A fine-tuned to represent one more input feature.

Inputs are sparse feature vectors ``s [n, n_features]`` (each feature on with probability ``p``, value in
``[0.5, 1]``). Both models map ``s`` through ``encoder`` (``Linear(n_features, d_hidden)``; site
``"encoder:output"``) and reconstruct ``s`` with a ReLU ``decoder``. Model A is trained on data where feature
``feature`` (0) never occurs and its encoder column is zero: A does not represent it. B starts from A and is
fine-tuned on data where every feature occurs, so it learns feature 0 while the others stay nearly the same.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .._wrap import wrap
from ..core._model import Model


class ToyAutoencoder(nn.Module):
    def __init__(self, n_features: int, d_hidden: int) -> None:
        super().__init__()
        self.encoder = nn.Linear(n_features, d_hidden, bias=False)
        self.decoder = nn.Linear(d_hidden, n_features)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.decoder(self.encoder(s)))


@dataclass
class PlantedDifference:
    model_a: Model
    model_b: Model
    feature: int
    """The feature only B represents."""
    inputs: torch.Tensor
    """``[n, n_features]`` inputs in which every feature occurs."""


def sample(
    n: int, n_features: int, p: float, gen: torch.Generator, absent: int | None = None
) -> torch.Tensor:
    on = torch.rand(n, n_features, generator=gen) < p
    s = on * (0.5 + 0.5 * torch.rand(n, n_features, generator=gen))
    if absent is not None:
        s[:, absent] = 0
    return s


def _train(module: ToyAutoencoder, data, steps: int, lr: float, keep_zero: int | None = None) -> None:
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    for step in range(steps):
        s = data(step)
        loss = (module(s) - s).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if keep_zero is not None:
            with torch.no_grad():
                module.encoder.weight[:, keep_zero] = 0


def planted_difference(n_features: int = 12, d_hidden: int = 16, p: float = 0.1, seed: int = 0,
                       n: int = 4096) -> PlantedDifference:  # fmt: skip
    """Build the pair (a second or two on CPU; deterministic for a seed)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    a = ToyAutoencoder(n_features, d_hidden)
    _train(a, lambda _: sample(256, n_features, p, gen, absent=0), 1500, 1e-2, keep_zero=0)
    b = copy.deepcopy(a)
    with torch.no_grad():  # A's unit for the feature is dead (never used); give B a small random start
        b.encoder.weight[:, 0] = 0.1 * torch.randn(d_hidden, generator=gen)
        b.decoder.weight[0] = 0.1 * torch.randn(d_hidden, generator=gen)
        b.decoder.bias[0] = 0.1
    _train(b, lambda _: sample(256, n_features, p, gen), 600, 3e-3)
    a.eval()
    b.eval()
    return PlantedDifference(wrap(a), wrap(b), 0, sample(n, n_features, p, gen))
