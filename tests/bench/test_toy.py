"""Toy models of superposition: seeded, cached, and the hidden activations are mixes of the true features."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TSI_CACHE", str(tmp_path))
    return tmp_path


def test_toy_superposition_truth_and_cache(cache):
    task = tsi.bench.toy_superposition(n_features=12, d_hidden=4, sparsity=0.1, seed=3)
    assert task.features.shape == (12, 4)
    torch.testing.assert_close(task.features.norm(dim=1), torch.ones(12))
    x = task.sample_features(500, seed=1)
    h = task.sample(500, seed=1)
    torch.testing.assert_close(h, x @ (task.features * task.norms[:, None]))  # h = sum_i x_i W_i
    assert 0.05 < float((x > 0).float().mean()) < 0.15  # sparsity is the firing probability
    assert task.represented.sum() >= 10 and task.loss < 0.2  # superposition: more features than dims kept
    files = list(cache.rglob("*.safetensors"))
    assert len(files) == 1 and not list(cache.rglob("*.pt"))
    again = tsi.bench.toy_superposition(n_features=12, d_hidden=4, sparsity=0.1, seed=3)
    torch.testing.assert_close(again.features, task.features)
    other = tsi.bench.toy_superposition(n_features=12, d_hidden=4, sparsity=0.1, seed=4)
    assert not torch.allclose(other.features, task.features)


def test_bad_arguments(cache):
    with pytest.raises(tsi.InputError, match="firing probability"):
        tsi.bench.toy_superposition(sparsity=0.0)
    with pytest.raises(tsi.InputError, match="importance"):
        tsi.bench.toy_superposition(n_features=5, importance=torch.ones(3))
