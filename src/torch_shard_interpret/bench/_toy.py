"""Toy models of superposition (Elhage et al. 2022): more sparse features than hidden dimensions.

    x  in R^n_features, each feature active with probability ``sparsity`` (value ~ U[0, 1]), else 0
    h  = W x                                   # [d_hidden], the hidden activations SAEs are trained on
    x' = ReLU(W^T h + b), loss = sum_i importance_i * (x_i - x'_i)^2

``W`` is trained (seeded, a few seconds on a CPU) and cached under ``$TSI_CACHE/bench``. The truth is the
columns of ``W``: ``.features`` holds them as unit rows ``[n_features, d_hidden]``; ``.norms`` their lengths
(a feature the model dropped has a norm near 0 and ``.represented`` False). Note: ``sparsity`` here is the
*firing probability* (Elhage's ``1 - S``), so ``sparsity=0.05`` means about 5% of features fire per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core._errors import InputError
from ._cache import load_or_build

TRAIN_STEPS = 4000
TRAIN_BATCH = 1024


class ToyModel(nn.Module):
    """``x -> ReLU(W^T W x + b)``; ``hidden(x) = W x`` is the bottleneck."""

    def __init__(self, n_features: int, d_hidden: int):
        super().__init__()
        self.W = nn.Parameter(torch.empty(d_hidden, n_features))
        self.b = nn.Parameter(torch.zeros(n_features))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.hidden(x) @ self.W + self.b)


@dataclass
class ToySuperposition:
    """A trained toy model and its truth. ``sample(n)`` gives hidden activations ``[n, d_hidden]``."""

    model: ToyModel
    n_features: int
    d_hidden: int
    sparsity: float
    importance: torch.Tensor
    seed: int
    loss: float
    """Final importance-weighted reconstruction loss of the toy model (per sample)."""

    @property
    def features(self) -> torch.Tensor:
        """``[n_features, d_hidden]`` the true feature directions (unit rows; the columns of ``W``)."""
        w = self.model.W.detach().T
        return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @property
    def norms(self) -> torch.Tensor:
        """``[n_features]`` length of each feature's column of ``W`` (about 1 when represented)."""
        return self.model.W.detach().norm(dim=0)

    @property
    def represented(self) -> torch.Tensor:
        """``[n_features]`` bool: features the model kept (norm above 0.5)."""
        return self.norms > 0.5

    @property
    def expected_l0(self) -> float:
        """Mean number of active features per sample."""
        return self.n_features * self.sparsity

    def sample_features(self, n: int, seed: int | None = None) -> torch.Tensor:
        """``[n, n_features]`` sparse feature values (seeded; default seed: the task's seed + 1)."""
        return _features(n, self.n_features, self.sparsity, self.seed + 1 if seed is None else seed)

    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        """``[n, d_hidden]`` hidden activations ``W x`` of ``n`` fresh samples."""
        with torch.no_grad():
            return self.model.hidden(self.sample_features(n, seed))


def _features(n: int, n_features: int, p: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    on = torch.rand(n, n_features, generator=g) < p
    return on * torch.rand(n, n_features, generator=g)


def toy_superposition(
    n_features: int = 40,
    d_hidden: int = 10,
    sparsity: float = 0.05,
    importance: float | torch.Tensor = 1.0,
    seed: int = 0,
) -> ToySuperposition:
    """Train (or load from the cache) a toy model of superposition.

    ``importance``: one number ``r`` (feature ``i`` weighs ``r**i``; 1.0 = all equal, Elhage use 0.7-0.9)
    or a tensor ``[n_features]``. ``sparsity``: the probability that a feature fires (see the module docs).
    """
    if n_features < 1 or d_hidden < 1:
        raise InputError(f"n_features and d_hidden must be positive, not {n_features} and {d_hidden}")
    if not 0 < sparsity <= 1:
        raise InputError(f"sparsity is a firing probability in (0, 1], not {sparsity}")
    if torch.is_tensor(importance):
        imp = importance.detach().float().flatten()
        if imp.numel() != n_features:
            raise InputError(f"importance has {imp.numel()} entries but there are {n_features} features")
    else:
        imp = float(importance) ** torch.arange(n_features, dtype=torch.float32)
    key = f"toy-{n_features}x{d_hidden}-p{sparsity:g}-s{seed}-i{abs(hash(tuple(imp.tolist()))) % 10**8}"

    def build():
        model, loss = _train(n_features, d_hidden, sparsity, imp, seed)
        return {"W": model.W.detach(), "b": model.b.detach()}, {"loss": loss, "importance": imp.tolist()}

    tensors, meta = load_or_build(key, build)
    model = ToyModel(n_features, d_hidden)
    with torch.no_grad():
        model.W.copy_(tensors["W"])
        model.b.copy_(tensors["b"])
    return ToySuperposition(model.eval(), n_features, d_hidden, sparsity, imp, seed, float(meta["loss"]))


def _train(n_features: int, d_hidden: int, p: float, imp: torch.Tensor, seed: int) -> tuple[ToyModel, float]:
    torch_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = ToyModel(n_features, d_hidden)
        nn.init.xavier_normal_(model.W)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, TRAIN_STEPS)
        g = torch.Generator().manual_seed(seed + 10_000)
        loss = torch.zeros(())
        for _ in range(TRAIN_STEPS):
            on = torch.rand(TRAIN_BATCH, n_features, generator=g) < p
            x = on * torch.rand(TRAIN_BATCH, n_features, generator=g)
            loss = ((model(x) - x).pow(2) * imp).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        return model, float(loss.detach())
    finally:
        torch.random.set_rng_state(torch_state)
