"""``from_pca``'s length is the mean difference's projection (not 1); ``normalized`` is a unit vector."""

from __future__ import annotations

import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.steering import SteeringVector
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

SITE = "blocks.1.resid_post"
POS = ["love love", "good day", "happy cat", "nice one"]
NEG = ["hate hate", "bad day", "sad cat", "mean one"]


def test_from_pca_length_is_mean_difference_projection():
    model = tsi.wrap(tiny_hf_model(), tiny_tokenizer())
    sv = SteeringVector.from_pca(model, POS, NEG, SITE, position=-1)
    diffs = torch.stack(
        [
            model.run(p, cache=SITE, return_logits=False).cache[SITE][0, -1]
            - model.run(n, cache=SITE, return_logits=False).cache[SITE][0, -1]
            for p, n in zip(POS, NEG, strict=True)
        ]
    ).float()
    u = sv.vector / sv.vector.norm()
    expected = float((diffs.mean(0) @ u).abs())
    assert abs(sv.norm - 1.0) > 1e-3  # a unit vector here would be the mutant
    assert abs(sv.norm - expected) < 1e-4 * max(1.0, expected)


def test_normalized_is_unit_and_same_direction():
    v = SteeringVector(torch.tensor([3.0, 0.0, 4.0]), SITE, {"method": "given"})
    n = v.normalized()
    assert torch.allclose(n.vector, torch.tensor([0.6, 0.0, 0.8]))
    assert n.site == SITE and n.metadata["normalized"] is True and n.metadata["method"] == "given"
    assert torch.equal(v.vector, torch.tensor([3.0, 0.0, 4.0]))  # the original is unchanged
