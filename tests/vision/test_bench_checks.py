"""The vision ground-truth checks (``torch_shard_interpret.vision._bench:checks``) pass and keep the row format."""

from __future__ import annotations

import torch

from torch_shard_interpret.vision._bench import checks
from torch_shard_interpret.vision._sanity import spearman

KEYS = {"tool", "task", "metric", "value", "threshold", "higher_is_better"}


def test_quick_checks_pass():
    rows = checks(quick=True)
    assert len(rows) >= 10
    for row in rows:
        assert KEYS <= set(row) and row["tool"] == "vision"
        ok = row["value"] >= row["threshold"] if row["higher_is_better"] else row["value"] <= row["threshold"]
        assert ok, row


def test_spearman_ties_and_constant_maps():
    a = torch.tensor([[0.0, 0.0, 1.0, 2.0]])
    assert torch.allclose(spearman(a, a), torch.ones(1, dtype=torch.float64))
    assert torch.allclose(spearman(a, -a), torch.ones(1, dtype=torch.float64))  # |map| ranks
    assert spearman(a, torch.tensor([[2.0, 1.0, 0.0, 0.0]])).item() < 0
    assert torch.isnan(spearman(a, torch.zeros(1, 4))).all()
