"""Fourier analysis: exact on planted spectra; on the shipped grokked model it finds a sparse set of key
frequencies that explain the embeddings and carry the whole computation."""

from __future__ import annotations

import math

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.analysis import fourier_basis, project_onto


class Planted(torch.nn.Module):
    """Embeddings that are exactly cos/sin of frequencies 3 and 7 (plus a little noise), over Z_23."""

    def __init__(self, p=23, d=16, keys=(3, 7)):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        a = torch.arange(p + 1, dtype=torch.float32)
        cols = [f(2 * math.pi * k * a / p) for k in keys for f in (torch.cos, torch.sin)]
        basis = torch.stack(cols, 1)  # [p+1, 2*len(keys)]
        w = basis @ torch.randn(basis.shape[1], d, generator=g) + 0.01 * torch.randn(p + 1, d, generator=g)
        self.emb = torch.nn.Embedding(p + 1, d)
        self.emb.weight.data.copy_(w)
        self.out = torch.nn.Linear(d, p + 1)

    def forward(self, ids):
        return self.out(self.emb(ids))


def test_basis_is_orthonormal_and_planted_keys_are_found():
    b = fourier_basis(23)
    torch.testing.assert_close(b @ b.T, torch.eye(23, dtype=torch.float64), atol=1e-10, rtol=0)
    model = tsi.wrap(Planted(), adapter=None)
    keys = tsi.analysis.fourier_key_frequencies(model, p=23, site="emb:output")
    assert keys == [3, 7]
    assert tsi.analysis.variance_explained(model, keys, p=23, site="emb:output") > 0.99
    table = torch.randn(23, 5, dtype=torch.float64)
    kept = project_onto([3], 23, table)
    torch.testing.assert_close(project_onto([3], 23, kept), kept)  # a projection


@pytest.fixture(scope="module")
def task():
    return tsi.bench.modular_addition()


def test_modular_addition_grokked_and_sparse(task):
    from torch_shard_interpret.bench._check_modular import restricted_accuracy

    assert task.p == 59 and task.accuracy >= 0.99
    assert "blocks.0.attn.z" in task.model.sites("blocks.*.attn.z")
    keys = tsi.analysis.fourier_key_frequencies(task.model)
    assert 1 <= len(keys) <= (task.p - 1) // 6
    assert tsi.analysis.variance_explained(task.model, keys) >= 0.9
    assert restricted_accuracy(task, keys) >= 0.95
    assert restricted_accuracy(task, keys, exclude=True) <= 0.2
