"""The planted-backdoor task: the backdoor works, the truth is consistent, the cache is used."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.bench import _trojan
from torch_shard_interpret.core._errors import InputError


def test_lm_backdoor_works_and_truth_is_consistent(lm_trojan):
    t = lm_trojan
    assert t.clean_accuracy >= 0.95 and t.attack_success >= 0.95
    diff = t.clean_inputs != t.triggered_inputs
    assert (diff.sum(1) == 1).all()  # exactly one position changed ...
    assert (diff.float().argmax(1) == t.trigger_positions).all()  # ... the recorded one
    assert (t.triggered_inputs[torch.arange(len(diff)), t.trigger_positions] == t.trigger).all()
    assert not (t.clean_inputs == t.trigger).any()
    assert "blocks.1.resid_post" in t.model.sites()


def test_lm_cache_reloads_the_same_model(lm_trojan):
    assert (_trojan.cache_path("lm") / "weights.safetensors").is_file()
    again = _trojan.trojan("lm", progress=False)
    x = lm_trojan.triggered_inputs[:8]
    with torch.no_grad():
        assert torch.equal(again.model.module(x).logits, lm_trojan.model.module(x).logits)


def test_patching_localises_the_trigger(lm_trojan):
    assert _trojan.lm_patching_localises(lm_trojan, 5) == 1.0


def test_neutral_baselines_rank_the_trigger_first_and_the_zero_one_warns(lm_trojan):
    ranks = _trojan.lm_attribution_ranks(lm_trojan, 5)
    assert ranks["ig_counterfactual"] == [1] * 5 and ranks["ig_mean"] == [1] * 5
    assert ranks["ig_ok"] == ranks["ig_mean_ok"] == [1] * 5  # completeness holds on every call
    # BOS kept, the rest zero, already predicts the target, so the default moves BOS too and needs no warning
    assert ranks["ig"] == [1] * 5 and ranks["ig_kept"] == ranks["ig_warned"] == [0] * 5
    ids = lm_trojan.triggered_inputs[:1]
    with pytest.warns(tsi.attribution.BaselineWarning, match="keep=\\[\\]"):
        tsi.attribution.integrated_gradients(lm_trojan.model, ids, target=lm_trojan.target, keep=[0])
    assert len(ranks["ig"]) == len(ranks["saliency"]) == 5


def test_bos_comes_first_and_the_trigger_never_sits_there(lm_trojan):
    assert (lm_trojan.clean_inputs[:, 0] == _trojan.BOS).all()
    assert (lm_trojan.trigger_positions >= 1).all() and (lm_trojan.trigger_positions <= 10).all()


def test_digits_backdoor_and_attribution(digits_trojan):
    t = digits_trojan
    assert t.clean_accuracy >= 0.95 and t.attack_success >= 0.95
    assert t.trigger.sum() == 4 and (t.triggered_inputs[:, 0, 6:, 6:] == 1).all()
    hits = _trojan.digits_attribution_hits(t, 50)
    assert hits["saliency"] >= 0.9 and hits["ig"] >= 0.9


def test_unknown_kind_is_one_clear_error():
    with pytest.raises(InputError, match="choose 'lm'"):
        _trojan.trojan("audio")
