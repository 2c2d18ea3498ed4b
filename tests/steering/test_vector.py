"""SteeringVector math, files and hooks on a tiny random LLaMA (no download)."""

from __future__ import annotations

import os

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.steering import SteeringFileError, SteeringVector
from torch_shard_interpret.steering._vector import first_component
from torch_shard_interpret.testing import assert_no_hooks, tiny_hf_model, tiny_tokenizer

SITE = "blocks.1.resid_post"
POS = ["i love this good book", "a great happy day", "good"]
NEG = ["i hate this bad book", "a terrible sad day at the house", "bad tree"]


@pytest.fixture(scope="module")
def model():
    return tsi.wrap(tiny_hf_model("llama"), tiny_tokenizer())


def _acts(model, text, site=SITE):
    return model.run(text, cache=site).cache[site][0]  # [pos, d_model], one text: no padding


def test_from_contrast_is_the_mean_difference_of_cached_activations(model):
    sv = SteeringVector.from_contrast(
        model, POS, NEG, site=SITE
    )  # texts of different lengths: padded batches
    want = torch.stack([_acts(model, t)[-1] for t in POS]).mean(0) - torch.stack(
        [_acts(model, t)[-1] for t in NEG]
    ).mean(0)
    torch.testing.assert_close(sv.vector, want, atol=1e-5, rtol=1e-5)
    assert sv.site == SITE and sv.metadata["method"] == "contrast" and sv.metadata["n_positive"] == 3

    mean = SteeringVector.from_contrast(model, POS, NEG, site=SITE, position="mean", batch_size=2)
    want = torch.stack([_acts(model, t).mean(0) for t in POS]).mean(0) - torch.stack(
        [_acts(model, t).mean(0) for t in NEG]
    ).mean(0)
    torch.testing.assert_close(mean.vector, want, atol=1e-5, rtol=1e-5)


def test_from_pair_averages_matched_positions(model):
    a, b = "a great happy day", "the terrible sad day at the house"
    sv = SteeringVector.from_pair(model, a, b, site=SITE)
    xa, xb = _acts(model, a), _acts(model, b)
    n = min(len(xa), len(xb))
    torch.testing.assert_close(sv.vector, (xa[:n] - xb[:n]).mean(0), atol=1e-5, rtol=1e-5)
    assert sv.metadata["matched_positions"] == n
    last = SteeringVector.from_pair(model, a, b, site=SITE, position=-1)
    torch.testing.assert_close(last.vector, xa[n - 1] - xb[n - 1], atol=1e-5, rtol=1e-5)
    with pytest.raises(tsi.InputError, match="out of range"):
        SteeringVector.from_pair(model, a, b, site=SITE, position=10)


def test_first_component_recovers_a_planted_direction():
    g = torch.Generator().manual_seed(0)
    d, n = 64, 200
    u = torch.randn(d, generator=g)
    u /= u.norm()
    coef = 2.0 + torch.randn(n, generator=g)  # pairs differ along u by varying amounts, mean 2
    diffs = coef[:, None] * u + 0.05 * torch.randn(n, d, generator=g)
    direction, proj, explained = first_component(diffs)
    assert float(direction @ u) > 0.99  # the right direction, pointing along the mean difference
    assert proj == pytest.approx(2.0, abs=0.2)
    assert explained > 0.5
    flipped, _, _ = first_component(-diffs)
    assert float(flipped @ u) < -0.99


def test_from_pca_points_along_the_contrast(model):
    pca = SteeringVector.from_pca(model, POS, NEG, site=SITE)
    contrast = SteeringVector.from_contrast(model, POS, NEG, site=SITE)
    assert float(pca.vector @ contrast.vector) > 0
    assert 0 < pca.metadata["explained_variance"] <= 1
    with pytest.raises(tsi.InputError, match="equal length"):
        SteeringVector.from_pca(model, POS, NEG[:2], site=SITE)


def test_apply_steers_and_removes_its_hooks(model):
    sv = SteeringVector.from_contrast(model, POS, NEG, site=SITE)
    plain = model.run("i think that").logits
    with sv.apply(model, scale=3.0):
        steered = model.run("i think that").logits
        assert tsi.testing.tsi_hooks(model.module)  # hooks are on while inside
    assert_no_hooks(model.module)
    direct = model.run("i think that", interventions={SITE: sv.intervention(3.0)}).logits
    torch.testing.assert_close(steered, direct)
    assert not torch.allclose(steered, plain)
    torch.testing.assert_close(model.run("i think that").logits, plain)  # nothing left behind
    with pytest.raises(RuntimeError), sv.apply(model, scale=1.0):
        raise RuntimeError("boom")
    assert_no_hooks(model.module)


def test_wrong_size_or_site_is_a_clear_error(model):
    with pytest.raises(tsi.ShapeMismatchError, match="d_model is 64"):
        SteeringVector(torch.zeros(10), SITE).apply(model)
    with pytest.raises(tsi.SiteNotFoundError):
        SteeringVector(torch.zeros(64), "blocks.1.resid_pots").apply(model)
    with pytest.raises(tsi.InputError, match="non-blank"):
        SteeringVector.from_contrast(model, ["ok", " "], NEG, site=SITE)
    with pytest.raises(tsi.InputError, match="one site"):
        SteeringVector.from_contrast(model, POS, NEG, site="blocks.*.resid_post")


def test_save_load_round_trip(model, tmp_path):
    sv = SteeringVector.from_contrast(model, POS, NEG, site=SITE, position="mean")
    path = sv.save(tmp_path / "happy.safetensors")
    assert os.listdir(tmp_path) == ["happy.safetensors"]  # no temporary file left
    back = SteeringVector.load(path)
    assert torch.equal(back.vector, sv.vector) and back.site == sv.site
    assert back.metadata == sv.metadata
    # the file is plain safetensors: other tools read the tensor and the JSON header
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert "tsi" in f.metadata() and f.get_tensor("vector").shape == (64,)


def test_missing_corrupt_or_unwritable_files(tmp_path):
    with pytest.raises(SteeringFileError, match="no steering vector file"):
        SteeringVector.load(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(SteeringFileError, match="not a readable steering vector"):
        SteeringVector.load(bad)
    sv = SteeringVector(torch.ones(4), SITE)
    with pytest.raises(SteeringFileError, match="does not exist"):
        sv.save(tmp_path / "missing" / "v.safetensors")
    assert isinstance(SteeringFileError("x"), (tsi.TsiError, OSError))
    # a failed write leaves the old file intact and no temporary file
    target = tmp_path / "keep.safetensors"
    sv.save(target)
    before = target.read_bytes()
    with pytest.raises(tsi.InputError, match="JSON"):
        SteeringVector(torch.ones(4), SITE, {"bad": object()}).save(target)
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["bad.safetensors", "keep.safetensors"]
