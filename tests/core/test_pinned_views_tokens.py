"""Pinned by mutation testing (docs/mutation.md): head views of a fused projection (writes into a slice, GQA
groups, dtypes), the norm-scale view's choice of centring, and token lookup through a tokenizer's parts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torch_shard_interpret as tsi
from torch_shard_interpret.core._tokens import str_tokens, token_id
from torch_shard_interpret.core._views import HeadSlice, norm_scale


def test_head_slice_writes_only_its_features():
    raw = torch.arange(2 * 3 * 12, dtype=torch.float16).reshape(2, 3, 12)
    value = -torch.ones(2, 3, 2, 2)
    head = HeadSlice(None, 4, n_heads=2)
    out = head.put(raw, value)
    assert out.dtype == torch.float16 and out.shape == raw.shape
    assert (out[..., :4] == -1).all() and torch.equal(out[..., 4:], raw[..., 4:])
    tail = HeadSlice(8, None, n_heads=2).put(raw, value)
    assert (tail[..., 8:] == -1).all() and torch.equal(tail[..., :8], raw[..., :8])
    assert torch.equal(HeadSlice(None, None, n_heads=2).put(raw[..., :4], value), value.flatten(-2).half())


def test_head_slice_without_a_batch_dimension():
    raw = torch.arange(3 * 8, dtype=torch.float32).reshape(3, 8)
    head = HeadSlice(None, None, n_heads=4)
    assert head.get(raw).shape == (3, 4, 2)
    assert torch.equal(head.put(raw, head.get(raw)), raw)


def test_grouped_heads_repeat_and_must_be_written_alike():
    raw = torch.arange(3 * 4, dtype=torch.float32).reshape(3, 4)  # 2 key/value heads of width 2
    head = HeadSlice(None, None, n_heads=2, group=2, name="blocks.0.attn.k")
    shown = head.get(raw)
    assert (
        shown.shape == (3, 4, 2)
        and torch.equal(shown[:, 0], shown[:, 1])
        and torch.equal(shown[:, 2], shown[:, 3])
    )
    assert torch.equal(head.put(raw, shown * 2), raw * 2)
    bad = shown.clone()
    bad[:, 1] += 1
    with pytest.raises(tsi.InterventionError, match=r"^blocks.0.attn.k: query heads that share"):
        head.put(raw, bad)


class RMSNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.variance_epsilon = 1e-6


def test_norm_scale_centres_layer_norms_only():
    x = torch.tensor([[1.0, 3.0]])
    layer = norm_scale(nn.LayerNorm(2, eps=0.0))
    rms = norm_scale(RMSNorm())
    assert layer is not None and rms is not None
    assert layer.centred and not rms.centred and rms.eps == 1e-6
    torch.testing.assert_close(layer.get(x), torch.tensor([[1.0]]))  # sqrt(var) of (1, 3)
    torch.testing.assert_close(rms.get(x), torch.tensor([[5.0 + 1e-6]]).sqrt())
    assert norm_scale(nn.Linear(2, 2)) is None


class _Tok:
    """A tokenizer with ids, pieces and a piece decoder that marks what it decoded."""

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": ([0] if add_special_tokens else []) + [ord(c) for c in text]}

    def convert_ids_to_tokens(self, ids):
        return [None if i > 1000 else f"P{i}" for i in ids]

    def convert_tokens_to_string(self, pieces):
        assert isinstance(pieces, list)
        return "<" + "".join(pieces) + ">"


def test_token_lookup_goes_through_the_tokenizer_parts():
    tok = _Tok()
    assert str_tokens(tok, torch.tensor([[5, 2000]])) == ["<P5>", ""]
    assert token_id(tok, "a") == ord("a")  # without the special token this tokenizer adds by default
