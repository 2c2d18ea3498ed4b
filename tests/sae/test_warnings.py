"""Silent useless results become warnings with the fix: a run of very few steps because the batch is as large
as the data, a trained SAE that predicts worse than the mean, and an evaluation below zero-ablation."""

from __future__ import annotations

import warnings

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.sae import SAE, SAEWarning


class RowStore:
    """The store API the trainer needs: .sites, len(), .batches(site, batch_size, shuffle, seed)."""

    def __init__(self, x: torch.Tensor):
        self.x, self.sites = x, ["a"]

    def __len__(self):
        return self.x.shape[0]

    def batches(self, site, batch_size=4096, shuffle=True, seed=0):
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)) if shuffle else None
        x = self.x[order] if order is not None else self.x
        for i in range(0, len(self), batch_size):
            yield x[i : i + batch_size]


def _sparse(n, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(24, d, generator=g), dim=-1)
    return ((torch.rand(n, 24, generator=g) < 0.1) * torch.rand(n, 24, generator=g)) @ dirs


def _messages(record):
    return [str(w.message) for w in record if issubclass(w.category, SAEWarning)]


def test_a_store_smaller_than_the_batch_warns_with_the_fix():
    store = RowStore(_sparse(1600))  # the case: ~1,600 rows, the default batch of 4096 -> 1 step
    with pytest.warns(
        SAEWarning, match=r"only 1 step \(one epoch of the store: 1600 rows in batches of 1600\)"
    ):
        sae = tsi.sae.train(store, {"d_sae": 24, "k": 3}, progress=False)
    assert sae.cfg.d_in == 12
    with pytest.warns(SAEWarning, match=r"set steps \(tsi train-sae: --steps\) to at least 1000"):
        tsi.sae.train(store, {"d_sae": 24, "k": 3}, {"batch_size": 400}, progress=False)  # 4 steps


def test_enough_steps_do_not_warn():
    store = RowStore(_sparse(1600))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        tsi.sae.train(store, {"d_sae": 24, "k": 3}, {"steps": 300, "batch_size": 256}, progress=False)
        tsi.sae.train(_sparse(1600), {"d_sae": 24, "k": 3}, {"steps": 300}, progress=False)  # a tensor: 300
    assert _messages(record) == []


def test_a_result_worse_than_the_mean_warns():
    x = _sparse(512)
    with pytest.warns(
        SAEWarning, match=r"predicts worse than the mean \(FVU [0-9.e+]+ > 1 on the last batch\)"
    ):
        tsi.sae.train(x, {"d_sae": 24, "k": 3}, {"steps": 20, "lr": 1e3, "warmup_steps": 0}, progress=False)


def test_evaluation_worse_than_useless_warns():
    from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

    model = tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer())
    sae = SAE(d_in=64, d_sae=32, kind="topk", k=4, hook_name="blocks.1.resid_post", seed=0)
    with torch.no_grad():
        sae.b_dec.fill_(50.0)  # reconstructions far from every activation
    with pytest.warns(SAEWarning, match="worse than useless at blocks.1.resid_post") as record:
        res = tsi.sae.evaluate(model, sae, ["the cat sat on the mat", "one two three four"])
    assert res.fvu > 1 and f"FVU {res.fvu:.2f}" in _messages(record)[0]
