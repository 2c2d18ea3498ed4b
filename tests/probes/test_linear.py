"""Probe math on synthetic data, and fit() on a tiny random LLaMA (no download)."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.probes import ProbeResults, fit, fit_probe, fit_ridge, summary_html
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer


def _blobs(n=240, d=32, k=3, sep=4.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = sep * torch.randn(k, d, generator=g)
    y = torch.arange(n) % k
    x = centres[y] + torch.randn(n, d, generator=g) + 50.0  # an offset: standardisation must cope
    return x, y


def test_logistic_probe_separates_classes_and_the_control_is_chance():
    x, y = _blobs()
    names = ["cat", "dog", "tree"]
    res = fit_probe(x, [names[i] for i in y], seed=0)
    assert res.task == "classification" and res.classes == names
    assert res.accuracy >= 0.98
    assert abs(res.control_accuracy - 1 / 3) < 0.2  # shuffled labels: chance
    assert res.selectivity > 0.5
    assert res.weights.shape == (3, 32) and res.bias.shape == (3,)
    # predict on raw activations (the weights are mapped back from the standardised space)
    assert res.predict(x[:6]) == [names[i] for i in y[:6]]
    assert res.predict_proba(x[:2]).sum(-1).allclose(torch.ones(2))
    assert res.n_train + res.n_val == 240 and res.n_val == 60


def test_numeric_class_labels_predict_a_tensor():
    x, y = _blobs(k=2)
    res = fit_probe(x, y)  # integer labels -> classification
    assert res.task == "classification"
    assert torch.equal(res.predict(x[:4]), y[:4])


def test_ridge_recovers_planted_weights():
    g = torch.Generator().manual_seed(1)
    n, d = 400, 20
    w = torch.randn(d, generator=g)
    scale = torch.linspace(0.5, 3.0, d)
    x = torch.randn(n, d, generator=g) * scale + 3.0
    y = x @ w + 0.7 + 0.01 * torch.randn(n, generator=g)
    res = fit_probe(x, y.tolist(), alpha=1e-3)  # float labels -> regression
    assert res.task == "regression" and res.accuracy is None
    assert res.score > 0.999
    torch.testing.assert_close(res.weights.double(), w.double(), atol=5e-3, rtol=0)
    assert float(res.bias) == pytest.approx(0.7, abs=0.05)
    assert res.control_score < 0.2  # shuffled targets cannot be predicted
    torch.testing.assert_close(res.predict(x[:5]).double(), y[:5].double(), atol=0.05, rtol=0)
    # the closed form, directly (primal and dual forms agree)
    wp, bp = fit_ridge(x[:15], y[:15], alpha=0.5)  # d > n: dual form
    z = x[:15].double() - x[:15].double().mean(0)
    wd = torch.linalg.solve(
        z.T @ z + 0.5 * torch.eye(d, dtype=torch.float64), z.T @ (y[:15].double() - y[:15].mean())
    )
    torch.testing.assert_close(wp, wd, atol=1e-6, rtol=1e-6)


def test_bad_labels_are_clear():
    x, _ = _blobs(n=20)
    with pytest.raises(tsi.InputError, match="2 distinct"):
        fit_probe(x, [1] * 20)
    with pytest.raises(tsi.InputError, match="labels"):
        fit_probe(x, [0, 1] * 5)
    with pytest.raises(tsi.InputError, match="val_fraction"):
        fit_probe(x, [0, 1] * 10, val_fraction=1.5)
    with pytest.raises(tsi.InputError, match="task"):
        fit_probe(x, [0, 1] * 10, task="clustering")


TEXTS = ["the cat is red", "a red cat", "my cat is good", "the cat was here", "one cat", "this cat is blue"] + [
    "the dog is red", "a red dog", "my dog is good", "the dog was here", "one dog", "this dog is blue"
]  # fmt: skip
LABELS = ["cat"] * 6 + ["dog"] * 6


def test_fit_harvests_every_site_in_one_run_per_batch():
    model = tsi.wrap(tiny_hf_model("llama"), tiny_tokenizer())
    calls = []
    handle = model.module.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        res = fit(model, TEXTS, LABELS, sites="blocks.*.resid_post", position="mean", batch_size=8)
    finally:
        handle.remove()
    assert len(calls) == 2  # 12 texts, batches of 8: two forwards for both sites
    assert isinstance(res, ProbeResults) and list(res) == ["blocks.0.resid_post", "blocks.1.resid_post"]
    r = res["blocks.1.resid_post"]
    assert r.weights.shape == (2, 64) and r.n_val == 4 and r.n_train == 8
    acts = tsi.probes.collect(model, TEXTS, "blocks.1.resid_post", position="mean")["blocks.1.resid_post"]
    assert acts.shape == (12, 64)
    html = res.to_html()
    assert summary_html(res) in html and html.startswith("<!DOCTYPE html>")
    assert "blocks.1.resid_post" in html and "control" in html
    with pytest.raises(tsi.SiteNotFoundError):
        fit(model, TEXTS, LABELS, sites="blocks.9.resid_post")
