"""The logit lens on tiny random models: exact invariants."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import TinyMLP, tiny_hf_model, tiny_tokenizer

PROMPT = "when mary and john went to the store john gave a drink to"


@pytest.fixture(params=["llama", "gpt2"])
def model(request):
    return tsi.wrap(tiny_hf_model(request.param), tokenizer=tiny_tokenizer())


def test_last_layer_equals_model_output(model):
    lens = tsi.lens.logit_lens(model, PROMPT)
    logits = model.run(PROMPT).logits[0]
    n_pos = logits.shape[0]
    assert lens.probs.shape == (model.cfg.n_layers, n_pos, model.cfg.d_vocab)
    torch.testing.assert_close(lens.probs[-1], logits.softmax(-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lens.probs.sum(-1), torch.ones(model.cfg.n_layers, n_pos))


def test_each_layer_matches_manual_readout(model):
    lens = tsi.lens.logit_lens(model, PROMPT)
    run = model.run(PROMPT, cache="blocks.*.resid_post")
    norm, head = model.site("final_norm").module, model.site("logits").module
    with torch.no_grad():
        manual = head(norm(run.cache.stack("blocks.*.resid_post")[:, 0])).softmax(-1)
    torch.testing.assert_close(lens.probs, manual, rtol=1e-5, atol=1e-6)


def test_rank_prob_and_top_tokens(model):
    lens = tsi.lens.logit_lens(model, PROMPT, target=" mary")
    mary = model.token_id(" mary")
    assert lens.target == mary
    assert lens.prob().shape == lens.rank().shape == (model.cfg.n_layers, len(lens.positions))
    torch.testing.assert_close(lens.prob(), lens.probs[..., mary])
    torch.testing.assert_close(lens.prob(" mary"), lens.prob(mary))
    values, ids = lens.top_ids(3)
    assert (lens.rank(int(ids[1, 2, 0]))[1, 2] == 0).item()
    top = lens.top_tokens(3)
    assert len(top) == model.cfg.n_layers and len(top[0]) == len(lens.positions) and len(top[0][0]) == 3
    tok, p = top[1][2][0]
    assert tok == model.tokenizer.decode([int(ids[1, 2, 0])]) and p == pytest.approx(float(values[1, 2, 0]))
    assert lens.str_tokens[1] == "mary"


def test_positions_subset(model):
    full = tsi.lens.logit_lens(model, PROMPT)
    part = tsi.lens.logit_lens(model, PROMPT, positions=[0, -1])
    assert part.positions == [0, full.probs.shape[1] - 1]
    torch.testing.assert_close(part.probs, full.probs[:, [0, -1]])
    with pytest.raises(tsi.InputError, match="outside the prompt"):
        tsi.lens.logit_lens(model, PROMPT, positions=[99])


def test_to_html_is_self_contained(model):
    html = tsi.lens.logit_lens(model, PROMPT, target=" mary").to_html()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "<title>" in html
    assert "http://" not in html and "https://" not in html


def test_bad_inputs(model):
    with pytest.raises(tsi.InputError, match="not one"):
        tsi.lens.logit_lens(model, PROMPT, target=" mary john")
    with pytest.raises(tsi.InputError, match="one prompt"):
        tsi.lens.logit_lens(model, [PROMPT, "the cat"])
    with pytest.raises(tsi.TsiError, match="final_norm"):
        tsi.lens.logit_lens(tsi.wrap(TinyMLP()), torch.randn(1, 3, 16))
