"""Input saliency: gradient x input on the embeddings equals the same gradient taken by hand."""

from __future__ import annotations

import warnings

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

PROMPT = "when mary and john went to the store john gave a drink to"


@pytest.fixture
def model():
    return tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer())


def _manual(model, target, baseline=None):
    ids = model.to_tokens(PROMPT)
    embeds = model.module.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = model.module(inputs_embeds=embeds).logits[0, -1]
    value = logits[target] - (logits[baseline] if baseline is not None else 0.0)
    (grad,) = torch.autograd.grad(value, embeds)
    return (grad * embeds).sum(-1)[0].detach(), grad.norm(dim=-1)[0]


def test_grad_x_input_matches_manual(model):
    mary, john = model.token_id(" mary"), model.token_id(" john")
    gxi, gnorm = _manual(model, mary, john)
    scores = tsi.attribution.saliency(model, PROMPT, " mary", baseline=" john")
    assert scores.shape == (len(model.to_str_tokens(PROMPT)),)
    torch.testing.assert_close(scores, gxi, rtol=1e-4, atol=1e-6)
    norms = tsi.attribution.saliency(model, PROMPT, mary, method="grad_norm", baseline=john)
    torch.testing.assert_close(norms, gnorm, rtol=1e-4, atol=1e-6)
    assert (norms >= 0).all()


def test_default_target_is_top_prediction(model):
    top = int(model.run(PROMPT).logits[0, -1].argmax())
    torch.testing.assert_close(
        tsi.attribution.saliency(model, PROMPT), tsi.attribution.saliency(model, PROMPT, top)
    )


def test_bad_inputs(model):
    with pytest.raises(tsi.InputError, match="unknown saliency method"):
        tsi.attribution.saliency(model, PROMPT, " mary", method="occlusion")
    with pytest.raises(tsi.InputError, match="not one"):
        tsi.attribution.saliency(model, PROMPT, "mary john")


def test_first_order_warning_names_the_fix_once_per_model(model):
    # A pre-norm LLaMA: sum(grad x input) misses logit(input) - logit(zero embeddings) by far more than half.
    with pytest.warns(tsi.attribution.FirstOrderWarning, match="integrated_gradients"):
        tsi.attribution.saliency(model, PROMPT, " mary")
    with warnings.catch_warnings():
        warnings.simplefilter("error", tsi.attribution.FirstOrderWarning)
        tsi.attribution.saliency(model, PROMPT, " john")  # the same model: not warned again
        tsi.attribution.saliency(model, PROMPT, " mary", method="grad_norm")  # no sum to check


def test_no_first_order_warning_where_the_model_is_linear(model):
    # Blocks that write nothing and no final norm: logits are linear in the embeddings, so the scores add up.
    for layer in model.module.model.layers:
        torch.nn.init.zeros_(layer.self_attn.o_proj.weight)
        torch.nn.init.zeros_(layer.mlp.down_proj.weight)
    model.module.model.norm = torch.nn.Identity()
    mary = model.token_id(" mary")
    with warnings.catch_warnings():
        warnings.simplefilter("error", tsi.attribution.FirstOrderWarning)
        scores = tsi.attribution.saliency(model, PROMPT, mary)
    logit = model.run(PROMPT).logits[0, -1, mary]
    torch.testing.assert_close(scores.sum(), logit.float(), rtol=1e-4, atol=1e-5)


def test_the_trojan_row_that_fails_at_the_defaults_warns():
    # The planted trigger decides the output, yet the scores sum to about 1% of the logit's change.
    from torch_shard_interpret.bench import trojan

    task = trojan("lm", progress=False)
    i = int((task.clean_labels != task.target).nonzero()[0])
    with pytest.warns(tsi.attribution.FirstOrderWarning, match="sums to"):
        tsi.attribution.saliency(task.model, task.triggered_inputs[i : i + 1], target=task.target)
