"""sweep on a tiny random LLaMA: shapes, per-layer recomputation, baseline, ranking and HTML."""

from __future__ import annotations

import math

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.steering import SteeringVector, perplexity, sweep
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

POS = ["i love this good book", "a great happy day"]
NEG = ["i hate this bad book", "a terrible sad day"]
PROMPTS = ["i think that", "the dog is"]


@pytest.fixture(scope="module")
def model():
    return tsi.wrap(tiny_hf_model("llama"), tiny_tokenizer())


def test_sweep_recomputes_the_vector_per_layer(model):
    seen = []

    def builder(m, site):
        seen.append(site)
        return SteeringVector.from_contrast(m, POS, NEG, site=site)

    def words(text):  # the metric: words in a prompt's continuation
        return float(len(text.split()))

    res = sweep(model, builder, PROMPTS, layers=[0, 1], scales=[0.0, 8.0], metric=words, max_new_tokens=3,
                progress=False)  # fmt: skip
    assert seen == ["blocks.0.resid_post", "blocks.1.resid_post"]
    assert res.metric.shape == res.perplexity.shape == (2, 2)
    assert len(res.texts[(1, 8.0)]) == 2
    # each cell's metric is the mean over the prompts of words() of that cell's continuations
    for i, layer in enumerate(res.layers):
        for j, scale in enumerate(res.scales):
            texts = res.texts[(layer, scale)]
            assert float(res.metric[i, j]) == pytest.approx(sum(map(words, texts)) / len(texts))
    assert res.baseline_metric == pytest.approx(sum(map(words, res.baseline_texts)) / len(PROMPTS))
    # scale 0 changes nothing: its cells equal the baseline
    assert res.texts[(0, 0.0)] == res.baseline_texts
    assert float(res.metric[0, 0]) == pytest.approx(res.baseline_metric)
    assert float(res.perplexity[1, 0]) == pytest.approx(res.baseline_perplexity, rel=1e-4)
    assert float(res.metric[0, 0]) == pytest.approx(res.baseline_metric)
    assert res.vector_norms[0] != res.vector_norms[1]
    best = res.best(max_perplexity=None)
    assert best.metric == float(res.metric.max())
    html = res.to_html()
    assert "<table" in html and "perplexity" in html


def test_sweep_with_contrast_texts_or_a_fixed_vector(model):
    res = sweep(model, (POS, NEG), PROMPTS, layers=[1], scales=[2.0], max_new_tokens=2, progress=False)
    assert math.isnan(float(res.metric[0, 0])) and math.isfinite(float(res.perplexity[0, 0]))
    with pytest.raises(tsi.InputError, match="no metric"):
        res.best()
    sv = SteeringVector.from_contrast(model, POS, NEG, site="blocks.1.resid_post")
    res = sweep(model, sv, PROMPTS, scales=[1.0], max_new_tokens=2, progress=False)
    assert res.layers == [1] and res.sites == ["blocks.1.resid_post"]


def test_logits_metric_sees_the_steered_model(model):
    sv = SteeringVector.from_contrast(model, POS, NEG, site="blocks.1.resid_post")
    good = model.token_id("good")
    calls = []

    def metric(logits):
        calls.append(logits.shape)
        return logits[:, -1, good]

    res = sweep(model, sv, PROMPTS, scales=[0.0, 10.0], metric=metric, metric_on="logits", max_new_tokens=2,
                progress=False)  # fmt: skip
    assert all(s[0] == 1 and s[2] == 128 for s in calls)
    assert float(res.metric[0, 0]) == pytest.approx(res.baseline_metric, abs=1e-4)
    assert float(res.metric[0, 1]) != pytest.approx(res.baseline_metric, abs=1e-4)


def test_perplexity_matches_a_direct_computation(model):
    cont = model.generate("i think that", max_new_tokens=4)
    tok = model.tokenizer
    ids = torch.tensor([tok("i think that")["input_ids"] + tok(cont, add_special_tokens=False)["input_ids"]])
    n_p = len(tok("i think that")["input_ids"])
    logits = model.run(ids).logits[0]
    nll = -torch.log_softmax(logits[n_p - 1 : -1], -1).gather(-1, ids[0, n_p:, None]).mean()
    assert perplexity(model, ["i think that"], [cont]) == pytest.approx(math.exp(float(nll)), rel=1e-4)
    assert math.isnan(perplexity(model, ["i think that"], [""], per_prompt=True)[0])


def test_bad_sweep_arguments(model):
    sv = SteeringVector.from_contrast(model, POS, NEG, site="blocks.1.resid_post")
    with pytest.raises(tsi.InputError, match="layers="):
        sweep(model, (POS, NEG), PROMPTS, progress=False)
    with pytest.raises(tsi.InputError, match="metric_on"):
        sweep(model, sv, PROMPTS, metric=len, metric_on="tokens", progress=False)
    with pytest.raises(tsi.SiteNotFoundError):
        sweep(model, sv, PROMPTS, layers=[7], progress=False)
    with pytest.raises(tsi.InputError, match="one number"):
        sweep(model, sv, PROMPTS, scales=[1.0], metric=lambda lg: lg[0, -1], metric_on="logits", max_new_tokens=1,
              progress=False)  # fmt: skip
