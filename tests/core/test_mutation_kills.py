"""Behaviour that mutation testing (``make mutate``) found unpinned: each test fails on a realistic bug."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import tiny_hf_model

IDS = torch.randint(4, 128, (3, 6), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def model():
    return tsi.wrap(tiny_hf_model("llama"))


def test_messages_name_the_valid_range_and_modes(model):
    with pytest.raises(
        tsi.InterventionError, match=r"heads=4 is out of range at blocks.0.attn.z, which has 4 heads \(0..3\)"
    ):
        model.run(IDS, interventions={"blocks.0.attn.z": tsi.Scale(0, heads=[4])})
    with pytest.raises(tsi.InterventionError, match="use one of 'zero', 'mean', 'resample'$"):
        tsi.Ablate("median")


def test_resample_is_reproducible_by_seed(model):
    def run(seed):
        return model.run(IDS, interventions={"blocks.0.resid_post": tsi.Ablate("resample", seed=seed)}).logits

    torch.testing.assert_close(run(3), run(3), rtol=0, atol=0)
    assert not torch.equal(run(0), run(1)) or not torch.equal(run(0), run(2))


def test_raw_sites_with_an_element_index(model):
    eager = tsi.wrap(tiny_hf_model("llama"))
    with pytest.warns(UserWarning, match="eager"):
        eager.set_attention("eager")
    run = eager.run(
        IDS,
        cache=[
            "blocks.0.attn.pattern",
            "model.layers.0.self_attn:output.1",
            "model.layers.1:input.hidden_states",
            "blocks.1.resid_pre",
        ],
    )
    assert torch.equal(run.cache["model.layers.0.self_attn:output.1"], run.cache["blocks.0.attn.pattern"])
    assert torch.equal(run.cache["model.layers.1:input.hidden_states"], run.cache["blocks.1.resid_pre"])


def test_a_failure_inside_attention_leaves_no_softmax_interceptor():
    eager = tsi.wrap(tiny_hf_model("gpt2"))
    with pytest.warns(UserWarning, match="eager"):
        eager.set_attention("eager")

    def boom(value, ctx):
        raise RuntimeError("user code failed")

    with pytest.raises(RuntimeError, match="user code failed"):
        eager.run(IDS, interventions={"blocks.1.attn.scores": tsi.Fn(boom)})
    assert torch.overrides._get_current_function_mode_stack() == []
    # and the next run's scores are read afresh (the mode of the failed call is gone)
    run = eager.run(IDS, cache=["blocks.1.attn.scores", "blocks.1.attn.pattern"])
    torch.testing.assert_close(
        run.cache["blocks.1.attn.scores"].softmax(-1), run.cache["blocks.1.attn.pattern"]
    )


def test_norm_scale_keeps_the_model_dtype():
    model = tsi.wrap(tiny_hf_model("llama").to(torch.bfloat16))
    run = model.run(IDS, cache=["blocks.0.ln1.scale", "final_norm.scale"])
    assert run.cache["blocks.0.ln1.scale"].dtype == torch.bfloat16
    assert run.cache["final_norm.scale"].shape == (3, 6, 1)
