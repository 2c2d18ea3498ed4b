"""Model diffing: zero for identical models, small for an int8 copy, and the planted B-only feature."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.diff import DiffError


@pytest.fixture(scope="module")
def planted():
    return tsi.diff.planted_difference()


@pytest.fixture(scope="module")
def crosscoder(planted):
    return tsi.diff.train_crosscoder(
        planted.model_a, planted.model_b, planted.inputs, site="encoder:output", d_latent=32, k=2,
        steps=1500, batch_size=512, progress=False,
    )  # fmt: skip


def _feature_latents(planted, cc):
    """The latent whose activation correlates best with each true feature."""
    s = planted.inputs
    with torch.no_grad():
        z = cc.crosscoder.encode(planted.model_a.module.encoder(s), planted.model_b.module.encoder(s))
    zc, sc = (z - z.mean(0)) / (z.std(0) + 1e-9), (s - s.mean(0)) / s.std(0)
    corr = sc.T @ zc / len(s)  # [n_features, d_latent]
    return corr.argmax(1), corr.max(1).values


def test_crosscoder_finds_the_planted_feature_as_b_only(planted, crosscoder):
    best, corr = _feature_latents(planted, crosscoder)
    assert (corr > 0.9).all()  # every true feature has a latent
    classes = crosscoder.classes
    assert classes[int(best[planted.feature])] == "b_only"
    assert abs(float(crosscoder.latent_scaling[best[planted.feature]])) < 0.2  # A really lacks it
    others = [classes[int(j)] for i, j in enumerate(best) if i != planted.feature]
    assert others.count("shared") >= 0.9 * len(others)
    counts = crosscoder.counts()
    assert counts["shared"] >= 0.7 * sum(counts.values()) and counts["a_only"] == 0
    assert crosscoder.fve["a"] > 0.95 and crosscoder.fve["b"] > 0.95


def test_crosscoder_save_load_and_html(tmp_path, crosscoder):
    crosscoder.save(tmp_path / "cc")
    again = tsi.diff.load_crosscoder(tmp_path / "cc")
    assert torch.allclose(again.relative_norm, crosscoder.relative_norm)
    assert again.classes == crosscoder.classes
    assert "B-only latents" in crosscoder.to_html() and crosscoder.to_dict()["counts"] == crosscoder.counts()


def test_identical_models_have_zero_divergence(lm_trojan):
    d = tsi.diff.compare(lm_trojan.model, lm_trojan.model, lm_trojan.clean_inputs[:16], progress=False)
    assert set(d.divergence) == {"blocks.0.resid_post", "blocks.1.resid_post"}
    assert all(v == 0 for v in d.divergence.values()) and d.logits_kl == 0
    assert all(v == 0 for v in d.lens_kl.values())
    assert "divergence" in d.to_html()


def test_embedded_model_vs_its_int8_copy():
    from _models import embedded_model

    model = embedded_model()
    q = tsi.diff.quantized_copy(model, bits=8)
    texts = ["The Eiffel Tower is located in the city of", "When Mary and John went to the store, John gave"]
    d = tsi.diff.compare(model, q, texts, progress=False)
    assert len(d.divergence) == model.cfg.n_layers == len(d.lens_kl)
    assert all(0 < v < 0.05 for v in d.divergence.values())
    assert 0 < d.logits_kl < 0.05
    q4 = tsi.diff.compare(model, tsi.diff.quantized_copy(model, bits=4), texts[:1], progress=False)
    assert q4.logits_kl > d.logits_kl  # coarser rounding moves the model further


def test_crosscoder_on_a_language_model_keeps_token_contexts(lm_trojan):
    cc = tsi.diff.train_crosscoder(
        lm_trojan.model, lm_trojan.model, lm_trojan.triggered_inputs[:40], site="blocks.1.resid_post",
        d_latent=64, k=4, steps=100, batch_size=256, progress=False,
    )  # fmt: skip
    assert len(cc.classes) == 64 and cc.counts()["b_only"] == cc.counts()["a_only"] == 0  # same model twice


def test_models_without_the_site_are_refused(planted, lm_trojan):
    with pytest.raises(DiffError, match="same architecture"):
        tsi.diff.compare(lm_trojan.model, planted.model_a, lm_trojan.clean_inputs[:2], progress=False)
