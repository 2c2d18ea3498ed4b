"""Token lookup has one home: ``Model.str_tokens`` / ``Model.token_id`` (over ``core/_tokens.py``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.lens import _logit
from torch_shard_interpret.patching import _common
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

PROMPT = "when mary and john went to the store john gave a drink to"
SRC = Path(tsi.__file__).parent


@pytest.fixture
def model():
    return tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer())


def test_every_way_to_read_tokens_agrees(model):
    ids = model.to_tokens(PROMPT)  # [1, pos]
    expected = [model.tokenizer.decode([t]) for t in ids[0].tolist()]  # the lens's former method
    assert model.str_tokens(ids) == model.str_tokens(ids[0]) == model.str_tokens(ids[0].tolist()) == expected
    assert model.to_str_tokens(PROMPT) == model.run(PROMPT).str_tokens == expected
    assert tsi.lens.logit_lens(model, PROMPT).str_tokens == expected
    assert expected[1] == "mary"


def test_lens_top_tokens_and_patching_labels_use_it(model):
    lens = tsi.lens.logit_lens(model, PROMPT)
    _, top = lens.top_ids(3)
    assert [t for t, _ in lens.top_tokens(3)[0][2]] == model.str_tokens(top[0, 2])
    ids = model.to_tokens(PROMPT)
    assert _common.position_labels(model, ids) == model.str_tokens(ids)
    embeds = torch.zeros(1, ids.shape[1], 8)  # not ids: the labels are positions
    assert _common.position_labels(model, embeds) == [str(i) for i in range(ids.shape[1])]


def test_without_tokenizer_ids_read_as_numbers():
    bare = tsi.wrap(tiny_hf_model("llama"))
    assert bare.str_tokens(torch.tensor([3, 17, 5])) == ["3", "17", "5"]
    lens = tsi.lens.logit_lens(bare, torch.tensor([[3, 17, 5]]))
    assert lens.str_tokens == ["3", "17", "5"]
    assert isinstance(lens.top_tokens(1)[0][0][0][0], int)  # documented: ids without a tokenizer
    with pytest.raises(tsi.InputError, match="needs a tokenizer; pass its token id instead"):
        bare.token_id(" mary")


def test_an_id_past_the_tokenizers_vocabulary_reads_as_empty(model):
    past = len(model.tokenizer) + 3  # the model's vocabulary (128) is larger than the tokenizer's
    assert past < model.cfg.d_vocab
    assert model.str_tokens([past]) == [model.tokenizer.decode([past])] == [""]


def test_token_id_errors_teach(model):
    assert model.token_id(" mary") == model.to_tokens(" mary")[0, -1]
    with pytest.raises(
        tsi.InputError, match=r"'mary john' is 2 tokens, not one; choose a token that is a single"
    ):
        model.token_id("mary john")
    with pytest.raises(tsi.InputError, match="the token is empty"):
        model.token_id("")
    with pytest.raises(tsi.InputError, match="the baseline 'mary john' is 2 tokens"):
        _logit.as_token_id(model, "mary john", "baseline")
    lens = tsi.lens.logit_lens(model, PROMPT)
    torch.testing.assert_close(lens.prob(" mary"), lens.prob(model.token_id(" mary")))
    with pytest.raises(tsi.InputError, match="2 tokens, not one"):
        lens.prob("mary john")


def test_nothing_outside_core_decodes_ids_itself():
    """Token text comes from ``Model.str_tokens`` (or ``core/_tokens.py``): no other file decodes ids."""
    assert not hasattr(_logit, "str_tokens") and not hasattr(_common, "str_tokens")
    own_way = re.compile(
        r"convert_ids_to_tokens|\.decode\(\[|\b(tokenizer|tok)\.(batch_)?decode\("
        r"|add_special_tokens=False\)\[\"input_ids\"\]\n"
    )
    found = {
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.parent.name != "core" and own_way.search(p.read_text(encoding="utf-8"))
    }
    assert found == set(), f"ids decoded outside core/: {sorted(found)}"


def test_a_minimal_tokenizer_reads_through_its_decode_or_as_ids():
    from torch_shard_interpret.core._tokens import str_tokens

    class Decodes:
        def decode(self, ids):
            return f"<{ids[0]}>"

    class CallOnly:
        def __call__(self, text, **kw):
            return {"input_ids": [1]}

    assert str_tokens(Decodes(), [3, 4]) == ["<3>", "<4>"]
    assert str_tokens(CallOnly(), torch.tensor([[3, 4]])) == ["3", "4"]
