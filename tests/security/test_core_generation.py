"""Position selectors during KV-cache generation equal the no-cache loop, step by step.

With the KV cache each forward after the first sees one new token, so an absolute position selector needs
the offset of that token. The offset comes from what the model really receives (a cache object under any
keyword, ``cache_position``, a legacy tuple or a longer attention mask). Each case compares the logits of
every generated step with ``use_cache=False`` generation, where every forward sees the whole sequence.
"""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.core._hooks import position_offset
from torch_shard_interpret.testing import tiny_hf_model

P = 5  # prompt length
STEPS = 4
SITE = "blocks.0.resid_post"


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request):
    return tsi.wrap(tiny_hf_model(request.param))


def _stepwise(model, interventions, use_cache):
    """Greedy generation; returns (tokens, last-position logits of every step)."""
    steps = []
    head = model.module.lm_head
    handle = head.register_forward_hook(lambda m, a, out: steps.append(out[:, -1].detach().clone()))
    try:
        ids = torch.arange(10, 10 + P).unsqueeze(0)
        out = model.generate(ids, max_new_tokens=STEPS, interventions=interventions, use_cache=use_cache)
    finally:
        handle.remove()
    assert len(steps) == STEPS
    return out, torch.stack(steps)


def _interventions(model, kind, positions):
    d = model.cfg.d_model
    gen = torch.Generator().manual_seed(1)
    if kind == "set":
        return tsi.Set(torch.randn(d, generator=gen) * 3, positions=positions)
    if kind == "add":
        return tsi.Add(torch.randn(d, generator=gen), scale=4.0, positions=positions)
    if kind == "fn":
        return tsi.Fn(lambda v, ctx: -2.0 * v, positions=positions)
    source = model.run(torch.randint(20, 100, (1, P + STEPS), generator=gen), cache=SITE).cache
    if kind == "resample":  # rows of another run's cache: must be read at the generated token's position
        return tsi.Ablate("resample", source=source, positions=positions)
    return tsi.Patch(source, positions=positions)


@pytest.mark.parametrize("kind", ["set", "add", "fn", "patch", "resample"])
@pytest.mark.parametrize("positions", [[0], [P], [P + 1], -1], ids=["0", "P", "P+1", "last"])
def test_generation_with_cache_equals_no_cache_loop(model, kind, positions):
    ivs = {SITE: _interventions(model, kind, positions)}
    cached_tokens, cached = _stepwise(model, ivs, use_cache=True)
    loop_tokens, loop = _stepwise(model, ivs, use_cache=False)
    _, plain = _stepwise(model, None, use_cache=True)
    torch.testing.assert_close(cached, loop, rtol=1e-4, atol=1e-4)
    assert torch.equal(cached_tokens, loop_tokens)
    # The intervention really acted, from the first step whose forward holds its position on.
    first = {"0": 0, "P": 1, "P+1": 2, "last": 0}[
        "0" if positions == [0] else "P" if positions == [P] else "P+1" if positions == [P + 1] else "last"
    ]
    assert torch.allclose(cached[:first], plain[:first])
    assert not torch.allclose(cached[first], plain[first])


def test_position_zero_is_applied_once_not_at_every_new_token(model):
    # The old bug: the offset stayed 0, so Set(positions=[0]) hit each generated token again.
    seen = []

    def spy(value, ctx):
        seen.append((ctx.offset, ctx.step, value.shape[1]))  # the region: position 0 alone

    model.generate(
        torch.arange(10, 10 + P).unsqueeze(0),
        max_new_tokens=3,
        interventions={SITE: tsi.Fn(spy, positions=[0])},
    )
    assert seen == [(0, 0, 1)]


class _OddCache:
    """A cache object as a future release might pass it: under a keyword nobody uses today."""

    def get_seq_length(self):
        return 7


def test_offset_is_read_from_whatever_the_model_receives():
    ids = torch.zeros(1, 1, dtype=torch.long)
    assert position_offset((), {"input_ids": ids, "cache": _OddCache()}) == 7
    assert position_offset((), {"input_ids": ids, "past_key_values": _OddCache()}) == 7
    assert position_offset((), {"input_ids": ids, "kv_state_of_the_future": _OddCache()}) == 7
    assert position_offset((ids, _OddCache()), {}) == 7
    assert position_offset((), {"input_ids": ids, "cache_position": torch.tensor([9])}) == 9
    legacy = ((torch.zeros(1, 2, 4, 8), torch.zeros(1, 2, 4, 8)),)
    assert position_offset((), {"input_ids": ids, "past_key_values": legacy}) == 4
    assert position_offset((), {"input_ids": ids, "attention_mask": torch.ones(1, 6)}) == 5
    assert position_offset((), {"input_ids": torch.zeros(1, 6, dtype=torch.long)}) == 0
