"""``prepend_bos``: every tokenized text starts with the BOS token, as TransformerLens does by default."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer


@pytest.fixture(scope="module")
def model():
    return tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer())


def test_off_by_default_and_on_per_call(model):
    bos = model.tokenizer.bos_token_id
    plain = model.to_tokens("the cat sat")
    assert model.prepend_bos is False and plain[0, 0] != bos
    with_bos = model.to_tokens("the cat sat", prepend_bos=True)
    assert with_bos[0, 0] == bos and torch.equal(with_bos[0, 1:], plain[0])
    run = model.run("the cat sat", prepend_bos=True)
    assert torch.equal(run.tokens, with_bos)
    ref = model.module(input_ids=with_bos).logits
    torch.testing.assert_close(run.logits, ref, rtol=0, atol=0)
    assert model.to_str_tokens("the cat", prepend_bos=True)[0] == "<bos>"
    # a text that already starts with BOS does not get a second one
    assert (model.to_tokens("<bos> the cat", prepend_bos=True) == bos).sum() == 1


def test_model_setting_and_batches(model):
    bos, pad = model.tokenizer.bos_token_id, model.tokenizer.pad_token_id
    model.prepend_bos = True
    try:
        run = model.run(["the cat", "when mary and john went"])
        assert (run.tokens[:, 0] == bos).all()  # right padding: BOS first in every row
        assert run.attention_mask[0].tolist() == [1, 1, 1] + [0] * (run.tokens.shape[1] - 3)
        assert (run.tokens[0, 3:] == pad).all()
        assert model.run(["the cat"], prepend_bos=False).tokens[0, 0] != bos
        # generation pads on the left: BOS follows the padding
        out = model.generate(["the cat", "when mary and john went"], max_new_tokens=2, full_text=True)
        assert len(out) == 2
        ids = model.to_tokens(["the cat", "when mary and john went"])
        assert ids.shape[1] == 6
    finally:
        model.prepend_bos = False


def test_left_padding_puts_bos_after_the_pads():
    from torch_shard_interpret.core._inputs import tokenize

    tok = tiny_tokenizer()
    enc = tokenize(tok, ["the cat", "when mary and john went"], padding_side="left", prepend_bos=True)
    row = enc["input_ids"][0].tolist()
    first = enc["attention_mask"][0].tolist().index(1)
    assert row[first] == tok.bos_token_id and all(t == tok.pad_token_id for t in row[:first])


def test_no_bos_token_is_a_clear_error(model):
    tok = tiny_tokenizer()
    tok.bos_token = None
    bare = tsi.wrap(model.module, tokenizer=tok)
    with pytest.raises(tsi.InputError, match="prepend_bos=True needs a tokenizer with a BOS token"):
        bare.run("the cat", prepend_bos=True)
