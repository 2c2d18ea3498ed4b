"""Activation patching on the unpatched run's KV prefix (``reuse_kv``, ``patching/_prefix.py``).

The cells patched from position ``p`` on run only the tokens ``p..n-1`` over the clean or corrupt run's
keys and values cropped to ``p``. Their metrics must equal those of ordinary patched runs, for metrics of the
last position (the logits of one position are kept) and of the whole sequence (the prefix logits are the
unpatched run's), and models that cannot run this way must fall back without a word and with the same result.
"""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.patching import _prefix
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

CLEAN = "when mary and john went to the store , john gave a drink to"
CORRUPT = "when john and mary went to the store , mary gave a drink to"
SITES = ["blocks.*.resid_pre", "blocks.*.attn.out", "blocks.*.mlp.out", "blocks.1.resid_post"]


@pytest.fixture(scope="module")
def model():
    return tsi.wrap(tiny_hf_model("llama", seed=1), tiny_tokenizer())


def _metrics(model):
    mary, john = model.token_id("mary"), model.token_id("john")
    last = lambda logits: logits[:, -1, mary] - logits[:, -1, john]  # noqa: E731
    every = lambda logits: (logits[:, :, mary] - logits[:, :, john]).mean(-1)  # noqa: E731
    return {"last position": last, "whole sequence": every}


def _loop(model, metric, site, direction):
    """One ordinary patched run per position (plain ``tsi.Patch``), the reference."""
    clean, corrupt = model.run(CLEAN, cache=site), model.run(CORRUPT, cache=site)
    base, source = (CORRUPT, clean) if direction == "denoise" else (CLEAN, corrupt)
    n = model.to_tokens(CLEAN).shape[1]
    return torch.tensor(
        [
            [float(metric(model.run(base, interventions={s: tsi.Patch(source, positions=[p])}).logits)[0])]
            for s in model.sites(site)
            for p in range(n)
        ]
    ).view(len(model.sites(site)), n)


@pytest.mark.parametrize("direction", ["denoise", "noise"])
@pytest.mark.parametrize("which", ["last position", "whole sequence"])
def test_reused_prefix_equals_ordinary_patched_runs(model, which, direction):
    metric = _metrics(model)[which]
    for site in SITES:
        fast = tsi.patching.activation_patching(
            model, CLEAN, CORRUPT, metric, sites=site, direction=direction
        )
        assert fast.info["reused_kv"], f"{site}: the KV prefix was not reused"
        base = fast.corrupt_metric if direction == "denoise" else fast.clean_metric
        torch.testing.assert_close(
            fast.raw + base, _loop(model, metric, site, direction), atol=1e-4, rtol=1e-4
        )
        plain = tsi.patching.activation_patching(
            model, CLEAN, CORRUPT, metric, sites=site, direction=direction, reuse_kv=False
        )
        assert not plain.info["reused_kv"]
        torch.testing.assert_close(fast.raw, plain.raw, atol=1e-5, rtol=1e-5)


def test_the_prefix_run_skips_the_tokens_before_the_patch(model, monkeypatch):
    """Each group of cells runs only the tokens from its first patched position on."""
    lengths = []
    real = tsi.Model.run

    def spy(self, inputs, *args, **kwargs):
        if isinstance(inputs, dict) and "input_ids" in inputs:
            lengths.append(inputs["input_ids"].shape[1])
        return real(self, inputs, *args, **kwargs)

    monkeypatch.setattr(tsi.Model, "run", spy)
    res = tsi.patching.activation_patching(model, CLEAN, CORRUPT, _metrics(model)["last position"])
    n = model.to_tokens(CLEAN).shape[1]
    assert res.info["reused_kv"]
    # positions where the two prompts differ start a group; each runs n - p tokens, never the full n
    assert lengths and all(0 < length < n for length in lengths)
    assert len(set(lengths)) == len(lengths)  # one forward per first patched position


def test_models_without_a_plain_kv_cache_fall_back(model):
    metric = _metrics(model)["last position"]
    sliding = tsi.wrap(tiny_hf_model("llama", seed=1, sliding_window=4), tiny_tokenizer())
    assert _prefix.base_kv(sliding, sliding.to_tokens(CLEAN)) is None
    res = tsi.patching.activation_patching(sliding, CLEAN, CORRUPT, metric, sites="blocks.*.resid_pre")
    assert not res.info["reused_kv"]
    ref = tsi.patching.activation_patching(
        sliding, CLEAN, CORRUPT, metric, sites="blocks.*.resid_pre", reuse_kv=False, share_prefix=False
    )
    torch.testing.assert_close(res.raw, ref.raw, atol=1e-5, rtol=1e-5)


def test_a_prefix_run_that_fails_leaves_no_hook_and_falls_back(model, monkeypatch):
    """A model whose forward refuses the grown batch on a reused cache: the hooks go, the plain path answers."""
    metric = _metrics(model)["last position"]
    blocks = [model.site(f"blocks.{i}.resid_pre").module for i in range(model.cfg.n_layers)]
    real, hooked = tsi.Model.run, []

    def refuse(self, inputs, *args, **kwargs):
        if isinstance(inputs, dict) and "input_ids" in inputs:
            hooked.append(any(b._forward_pre_hooks for b in blocks))
            raise RuntimeError("this model takes no reused cache")
        return real(self, inputs, *args, **kwargs)

    monkeypatch.setattr(tsi.Model, "run", refuse)
    res = tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, sites="blocks.*.resid_pre")
    monkeypatch.undo()
    assert hooked == [True]  # the grow hooks were on during the one prefix run tried
    assert not res.info["reused_kv"]
    assert not any(b._forward_pre_hooks for b in blocks)
    ref = tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, sites="blocks.*.resid_pre")
    torch.testing.assert_close(res.raw, ref.raw, atol=1e-5, rtol=1e-5)
