"""Detectors on the planted backdoor, the digits patch and distribution shift; save/load; stores; errors."""

from __future__ import annotations

import json

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.anomaly import AnomalyError, Detector, auroc, average_precision
from torch_shard_interpret.anomaly._bench import compare_detectors, shift_features
from torch_shard_interpret.bench._trojan import digits_data, lm_data


@pytest.fixture(scope="module")
def trusted_ids():
    return lm_data(300, torch.Generator().manual_seed(5))[0]


def test_public_fit_score_evaluate_on_the_backdoor(lm_trojan, trusted_ids):
    det = tsi.anomaly.fit(lm_trojan.model, trusted_ids, sites="blocks.*.resid_post", progress=False)
    scores = det.score(lm_trojan.triggered_inputs[:5])
    assert scores.shape == (5,)
    res = tsi.anomaly.evaluate(det, lm_trojan.clean_inputs, lm_trojan.triggered_inputs)
    assert res.auroc >= 0.95 and res.ap >= 0.95
    assert set(res.site_auroc) == {"blocks.0.resid_post", "blocks.1.resid_post"}
    assert json.dumps(res.to_dict()) and "AUROC" in res.to_html()


def test_every_detector_separates_the_backdoor(lm_trojan, trusted_ids):
    sites = lm_trojan.model.sites("blocks.*.resid_post")
    ext = tsi.anomaly.extract
    feats = {
        "trusted": ext(lm_trojan.model, trusted_ids, sites, progress=False),
        "normal": ext(lm_trojan.model, lm_trojan.clean_inputs[:100], sites, progress=False),
        "anomalous": ext(lm_trojan.model, lm_trojan.triggered_inputs[:100], sites, progress=False),
    }
    rows = {r["detector"]: r for r in compare_detectors(feats)}
    assert set(rows) == set(tsi.anomaly.DETECTORS)
    for name, r in rows.items():
        assert r["auroc"] >= 0.9, (name, r)


def test_scores_rank_shifted_inputs_higher_not_random(lm_trojan, trusted_ids):
    det = tsi.anomaly.fit(lm_trojan.model, trusted_ids, progress=False)
    fresh = lm_data(50, torch.Generator().manual_seed(99))[0]
    # Normal fresh inputs score like the trusted data; triggered ones far above all of them.
    assert det.score(lm_trojan.triggered_inputs[:50]).min() > det.score(fresh).max()


@pytest.mark.parametrize("kind", ["mahalanobis", "sae", "abstraction", "probe"])
def test_save_load_round_trip(tmp_path, lm_trojan, trusted_ids, kind):
    extra = {"anomalous_data": lm_trojan.triggered_inputs[:20]} if kind == "probe" else {}
    det = tsi.anomaly.fit(lm_trojan.model, trusted_ids[:200], detector=kind, progress=False, **extra)
    det.save(tmp_path / "det")
    assert sorted(p.name for p in (tmp_path / "det").iterdir()) == ["detector.json", "detector.safetensors"]
    again = tsi.anomaly.load(tmp_path / "det", model=lm_trojan.model)
    x = lm_trojan.triggered_inputs[:10]
    assert torch.allclose(again.score(x), det.score(x), atol=1e-4)
    with pytest.raises(AnomalyError, match="needs the model"):
        tsi.anomaly.load(tmp_path / "det").score(x)


def test_fit_streams_from_an_activation_store(tmp_path, lm_trojan, trusted_ids):
    store = tsi.store.harvest(
        lm_trojan.model, trusted_ids, sites=["blocks.1.resid_post"], path=tmp_path / "acts", progress=False
    )
    from_store = tsi.anomaly.fit(
        None, tsi.store.open(tmp_path / "acts"), sites="blocks.*.resid_post", progress=False
    )
    direct = tsi.anomaly.fit(lm_trojan.model, trusted_ids, sites="blocks.1.resid_post", progress=False)
    assert from_store.sites == ["blocks.1.resid_post"] and len(store) == trusted_ids.numel()
    feats = direct.features(lm_trojan.triggered_inputs[:10])
    assert torch.allclose(
        from_store.score_features(feats), direct.score_features(feats), rtol=1e-3, atol=1e-3
    )


def test_vision_model_digits_patch(digits_trojan):
    trusted = digits_data()[0][len(digits_trojan.clean_inputs) :][:600]
    det = tsi.anomaly.fit(
        digits_trojan.model, trusted, sites=["conv1:output", "conv2:output"], progress=False
    )
    res = tsi.anomaly.evaluate(det, digits_trojan.clean_inputs, digits_trojan.triggered_inputs)
    assert res.auroc >= 0.95


def test_distribution_shift_on_the_embedded_model():
    from _models import embedded_model

    rows = {
        r["detector"]: r for r in compare_detectors(shift_features("code", embedded_model()), ["mahalanobis"])
    }
    assert rows["mahalanobis"]["auroc"] >= 0.95


def test_auroc_and_ap_match_their_definitions():
    gen = torch.Generator().manual_seed(0)
    s, y = torch.randn(300, generator=gen), (torch.rand(300, generator=gen) < 0.3).long()
    s = s + y  # informative scores
    from sklearn.metrics import average_precision_score, roc_auc_score

    assert auroc(s, y) == pytest.approx(roc_auc_score(y.numpy(), s.numpy()), abs=1e-9)
    assert average_precision(s, y) == pytest.approx(average_precision_score(y.numpy(), s.numpy()), abs=1e-9)
    assert auroc(torch.tensor([1.0, 1.0]), torch.tensor([0, 1])) == 0.5


def test_errors_name_the_fix(lm_trojan, trusted_ids):
    m = lm_trojan.model
    with pytest.raises(AnomalyError, match="choose one of"):
        tsi.anomaly.fit(m, trusted_ids, detector="nope", progress=False)
    with pytest.raises(AnomalyError, match="anomalous_data"):
        tsi.anomaly.fit(m, trusted_ids, detector="probe", progress=False)
    with pytest.raises(AnomalyError, match="at least 2 sites"):
        tsi.anomaly.fit(m, trusted_ids, sites="blocks.0.resid_post", detector="abstraction", progress=False)
    with pytest.raises(AnomalyError, match="at least 2 trusted"):
        Detector.from_features({"s": torch.zeros(1, 3)})
    with pytest.raises(tsi.SiteNotFoundError):
        tsi.anomaly.fit(m, trusted_ids, sites="blocks.9.nothing", progress=False)


def test_quick_anomaly_check_trains_a_smaller_sae_and_passes():
    from torch_shard_interpret.anomaly import _bench

    rows = _bench.checks(quick=True)
    assert {r["task"] for r in rows} == {"trojan-lm", "trojan-digits"}
    for r in rows:
        assert r["value"] >= r["threshold"], r
    sae = [r for r in rows if r["tool"] == "anomaly.sae"]
    assert len(sae) == 2 and all("suite detector: steps=100" in r["note"] for r in sae)
