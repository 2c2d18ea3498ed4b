"""Integrated gradients: exact on a linear model, complete (within the quadrature error) on real ones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torch_shard_interpret as tsi
from torch_shard_interpret.attribution._ig import quadrature
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

PROMPT = "when mary and john went to the store john gave a drink to"


class Linear(nn.Module):
    """Logits linear in the embeddings: a causal running sum of embeddings, then a linear readout."""

    def __init__(self, vocab: int = 20, d: int = 8):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.out = nn.Linear(d, vocab)

    def forward(self, ids):
        return self.out(self.emb(ids).cumsum(1))  # [batch, pos, vocab]


@pytest.fixture
def tiny():
    return tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer())


@pytest.mark.parametrize("method", ["gausslegendre", "trapezoid", "riemann_middle"])
def test_linear_model_equals_gradient_times_difference(method):
    torch.manual_seed(0)
    module = Linear()
    model = tsi.wrap(module, adapter=None)
    ids = torch.tensor([[3, 7, 1, 4, 9]])
    baseline = torch.randn(5, 8)
    res = tsi.attribution.integrated_gradients(
        model, ids, target=6, baseline=baseline, steps=5, batch_size=2, method=method, site="emb:output"
    )
    grad = module.out.weight[6].detach()  # d logit_6 at the last position / d embedding at every position
    expected = ((module.emb(ids)[0].detach() - baseline) * grad).sum(-1)
    torch.testing.assert_close(res.attributions, expected, rtol=1e-5, atol=1e-5)
    assert abs(res.completeness_error) < 1e-4 and res.passes(1e-4)
    assert res.per_dim.shape == (5, 8)


def test_quadrature_rules_integrate_polynomials():
    for method, steps in [("gausslegendre", 4), ("trapezoid", 200), ("riemann_middle", 200)]:
        a, w = quadrature(steps, method)
        assert float(w.sum()) == pytest.approx(1.0)
        assert float((w * a**3).sum()) == pytest.approx(0.25, abs=1e-4)


def test_completeness_on_tiny_model(tiny):
    mary, john = tiny.token_id(" mary"), tiny.token_id(" john")
    res = tsi.attribution.integrated_gradients(tiny, PROMPT, " mary", steps=64, batch_size=32)
    assert res.attributions.shape == (len(tiny.to_str_tokens(PROMPT)),)
    assert res.passes(0.02), res.summary()
    diff = tsi.attribution.integrated_gradients(
        tiny, PROMPT, metric=lambda lg: lg[:, -1, mary] - lg[:, -1, john], baseline="pad", steps=32
    )
    assert diff.target is None and diff.baseline == "pad"
    assert diff.passes(0.02), diff.summary()
    full = tiny.run(PROMPT).logits[0, -1]
    assert diff.f_input == pytest.approx(float(full[mary] - full[john]), rel=1e-4, abs=1e-5)
    assert "<html" in res.to_html()


def test_batching_does_not_change_result(tiny):
    a = tsi.attribution.integrated_gradients(tiny, PROMPT, " mary", steps=8, batch_size=8)
    b = tsi.attribution.integrated_gradients(tiny, PROMPT, " mary", steps=8, batch_size=3)
    torch.testing.assert_close(a.per_dim, b.per_dim, rtol=1e-4, atol=1e-6)


def test_bad_inputs(tiny):
    with pytest.raises(tsi.InputError, match="unknown baseline"):
        tsi.attribution.integrated_gradients(tiny, PROMPT, " mary", baseline="noise")
    with pytest.raises(tsi.InputError, match="unknown integration method"):
        tsi.attribution.integrated_gradients(tiny, PROMPT, " mary", method="simpson")
    with pytest.raises(tsi.InputError, match="one value per batch row"):
        tsi.attribution.integrated_gradients(tiny, PROMPT, metric=lambda lg: lg.sum())
    with pytest.raises(tsi.InputError, match="shape"):
        tsi.attribution.integrated_gradients(tiny, PROMPT, " mary", baseline=torch.zeros(3, 64))


def test_embedded_model_paris():
    from _models import embedded_model

    model = embedded_model()  # `make test` installs it: a missing model is a failure, not a skip
    # The first token is SmolLM2's attention sink: keep it fixed, or the path gets too rough for 128 points.
    res = tsi.attribution.integrated_gradients(
        model, "The Eiffel Tower is located in the city of", " Paris", steps=128, batch_size=32, keep=[0]
    )
    assert res.passes(0.05), res.summary()
    assert res.attributions[0] == 0 and res.f_input > 10
    print(res.summary())
