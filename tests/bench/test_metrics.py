"""Recovery and ranking scores: checked against brute force and hand-computed cases."""

from __future__ import annotations

import itertools

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.bench._metrics import linear_assignment


def test_linear_assignment_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    for n, m in [(3, 3), (4, 6), (5, 5)]:
        cost = torch.rand(n, m, generator=g).tolist()
        rows, cols = linear_assignment(cost)
        got = sum(cost[r][c] for r, c in zip(rows, cols, strict=True))
        best = min(sum(cost[i][p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        assert rows == list(range(n)) and len(set(cols)) == n
        assert got == pytest.approx(best)


def test_recovery_scores():
    true = torch.eye(4)
    assert tsi.bench.mean_max_cosine(true, torch.eye(4)[[2, 0, 3, 1]] * 3) == pytest.approx(1.0)
    # one found direction shared by two true ones: max-cosine forgives it, MCC (one-to-one) does not
    found = torch.stack(
        [torch.tensor([1.0, 0, 0, 0]), torch.tensor([1.0, 0, 0, 0]), torch.eye(4)[2], torch.eye(4)[3]]
    )
    found[1] += 1e-3 * torch.tensor([0, 0, 0, 1.0])
    assert tsi.bench.mean_max_cosine(true, found) == pytest.approx(0.75, abs=1e-3)
    assert tsi.bench.mcc(true, found) < 0.76
    assert tsi.bench.mcc(true, -torch.eye(4)) == pytest.approx(1.0)  # |cos|, as SynthSAEBench
    with pytest.raises(tsi.InputError, match="same width"):
        tsi.bench.mcc(true, torch.eye(3))


def test_auroc():
    scores = {"a0.h1": 5.0, "a1.h0": -4.0, "m0": 1.0, "a0.h0": 0.5, "m1": 1.0}
    assert tsi.bench.auroc(scores, ["a0.h1", "a1.h0"]) == 1.0
    assert tsi.bench.auroc(scores, ["a0.h1", "a1.h0"], absolute=False) == pytest.approx(0.5)
    assert tsi.bench.auroc(scores, ["m0"]) == pytest.approx((1 + 0.5) / 4)
    with pytest.raises(tsi.InputError, match="no entry"):
        tsi.bench.auroc(scores, ["a5.h5"])
