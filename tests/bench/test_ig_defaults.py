"""IG's defaults: the attention-sink first token is kept, the grid refines until completeness holds, and a
call that cannot reach the tolerance warns with the fix."""

from __future__ import annotations

import warnings

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

PROMPT = "when mary and john went to the store john gave a drink to"


@pytest.fixture
def tiny():
    return tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer())


def test_default_keeps_first_token_and_refines(tiny):
    res = tsi.attribution.integrated_gradients(tiny, PROMPT, " mary", steps=2)
    assert res.attributions[0] == 0  # position 0 is kept at its input embedding
    assert res.method == "trapezoid" and res.passes(0.05), res.summary()
    assert res.steps > 2  # 2 intervals were not enough: the grid was refined
    fixed = tsi.attribution.integrated_gradients(tiny, PROMPT, " mary", steps=2, tol=None)
    assert fixed.steps == 2
    everything = tsi.attribution.integrated_gradients(tiny, PROMPT, " mary", keep=[])
    assert everything.attributions[0] != 0


def test_refinement_reuses_points_and_matches_a_fixed_grid(tiny):
    with pytest.warns(tsi.attribution.CompletenessWarning):  # tol 1e-9 is out of reach: it refines to the end
        refined = tsi.attribution.integrated_gradients(tiny, PROMPT, " mary", steps=4, tol=1e-9, max_steps=16)
    assert refined.steps == 16
    direct = tsi.attribution.integrated_gradients(tiny, PROMPT, " mary", steps=16, tol=None)
    torch.testing.assert_close(refined.per_dim, direct.per_dim, rtol=1e-4, atol=1e-6)


def test_failing_completeness_warns_with_the_fix(tiny):
    with pytest.warns(tsi.attribution.CompletenessWarning, match="max_steps"):
        tsi.attribution.integrated_gradients(tiny, PROMPT, " mary", steps=1, max_steps=1, tol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a passing call is silent
        tsi.attribution.integrated_gradients(tiny, PROMPT, " mary")


def test_a_baseline_that_already_predicts_the_target_warns_with_the_fix(tiny):
    x = tiny.run(PROMPT, cache="embed").cache["embed"][0]  # [pos, d_model]
    with pytest.warns(tsi.attribution.BaselineWarning, match="already predicts the target.*counterfactual"):
        tsi.attribution.integrated_gradients(tiny, PROMPT, baseline=x.clone())  # target: its own top token
