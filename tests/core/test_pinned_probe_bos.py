"""Pinned by mutation testing (docs/mutation.md): the direct-hook probe's verdicts, and BOS tokenization's
padding choices on a tokenizer that lacks attributes."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

import torch_shard_interpret as tsi
from torch_shard_interpret.core import _fasthooks
from torch_shard_interpret.core._inputs import _with_bos


class _HooklessIdentity(nn.Module):
    """A module whose call skips torch's hook tables, as a torch that dispatched hooks elsewhere would."""

    def __call__(self, x):
        return x


class _StickyIdentity(nn.Identity):
    """Hooks fire, but popping them from the tables does not stop them (they live somewhere else too)."""

    def __init__(self):
        super().__init__()
        self.kept = None

    def __call__(self, x):
        out = super().__call__(x)
        if self.kept is None:
            self.kept = list(self._forward_hooks.values())
        else:  # the second call: the output hook fires again although the probe popped it
            for hook in self.kept:
                hook(self, (x,), out)
        return out


def test_the_probe_accepts_this_torch():
    assert _fasthooks._probe() is True


@pytest.mark.parametrize("identity", [_HooklessIdentity, _StickyIdentity])
def test_the_probe_refuses_hooks_that_do_not_fire_or_do_not_go(monkeypatch, identity):
    monkeypatch.setattr(_fasthooks, "nn", types.SimpleNamespace(Identity=identity))
    assert _fasthooks._probe() is False


class _Tok:
    """The least a tokenizer needs for ``_with_bos``: a call and the BOS id (pad and side optional)."""

    def __init__(self, rows, **attrs):
        self.rows = rows
        self.__dict__.update(attrs)

    def __call__(self, texts):
        return {"input_ids": self.rows[: len(texts)]}


def test_bos_rows_pad_right_with_bos_when_the_tokenizer_has_no_pad_or_side():
    tok = _Tok([[5, 6], [7]], bos_token_id=1, pad_token_id=None)
    enc = _with_bos(tok, ["a", "b"], None)
    assert enc["input_ids"].tolist() == [[1, 5, 6], [1, 7, 1]]
    assert enc["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert enc["input_ids"].dtype == enc["attention_mask"].dtype == torch.long


def test_bos_rows_follow_the_tokenizer_side_unless_told():
    tok = _Tok([[1, 5, 6], [7]], bos_token_id=1, pad_token_id=0, padding_side="left")
    assert _with_bos(tok, ["a", "b"], None)["input_ids"].tolist() == [[1, 5, 6], [0, 1, 7]]
    assert _with_bos(tok, ["a", "b"], "right")["input_ids"].tolist() == [[1, 5, 6], [1, 7, 0]]
    tok.padding_side = "right"
    enc = _with_bos(tok, ["a", "b"], "left")
    assert enc["input_ids"].tolist() == [[1, 5, 6], [0, 1, 7]]
    assert enc["attention_mask"].tolist() == [[1, 1, 1], [0, 1, 1]]


def test_bos_needs_a_bos_attribute():
    with pytest.raises(tsi.InputError) as info:
        _with_bos(_Tok([[5]]), ["a"], None)
    assert str(info.value) == "prepend_bos=True needs a tokenizer with a BOS token; this tokenizer has none"
