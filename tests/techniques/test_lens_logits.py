"""Logit-lens logits, log-probs and the embedding row, checked against a by-hand readout.

The manual readout below writes the final norm out from its parameters (RMSNorm or LayerNorm) and
multiplies by the unembedding matrix, so the lens is compared with arithmetic, not with its own code path.
"""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

PROMPT = "when mary and john went to the store john gave a drink to"


@pytest.fixture(params=["llama", "gpt2"])
def model(request):
    return tsi.wrap(tiny_hf_model(request.param), tokenizer=tiny_tokenizer())


def _eps(norm: torch.nn.Module) -> float:
    for attr in ("variance_epsilon", "eps"):
        if isinstance(getattr(norm, attr, None), float):
            return float(getattr(norm, attr))
    raise AssertionError(f"no epsilon on {type(norm).__name__}")


@torch.no_grad()
def manual_logits(model, resid: torch.Tensor) -> torch.Tensor:
    """``W_U @ final_norm(resid)`` (+ unembedding bias), the norm written out by hand, float32."""
    norm, head = model.site("final_norm").module, model.site("logits").module
    x = resid.float()
    if isinstance(norm, torch.nn.LayerNorm):
        x = x - x.mean(-1, keepdim=True)
    x = x / torch.sqrt((x * x).mean(-1, keepdim=True) + _eps(norm)) * norm.weight.float()
    if getattr(norm, "bias", None) is not None:
        x = x + norm.bias.float()
    out = x @ head.weight.float().T
    return out + head.bias.float() if getattr(head, "bias", None) is not None else out


def _check_against_manual(model, prompt, atol):
    lens = tsi.lens.logit_lens(model, prompt, include_embed=True, return_logits=True)
    run = model.run(prompt, cache=["embed", "blocks.0.resid_pre", "blocks.*.resid_post"])
    n = model.cfg.n_layers
    assert lens.layer_names == ["blocks.0.resid_pre", *(f"blocks.{i}.resid_post" for i in range(n))]
    assert (
        lens.hook_names[0] == "blocks.0.hook_resid_pre"
        and lens.hook_names[-1] == f"blocks.{n - 1}.hook_resid_post"
    )
    assert lens.logits is not None and lens.logits.shape == lens.probs.shape == (
        n + 1,
        run.tokens.shape[1],
        model.cfg.d_vocab,
    )
    for i in range(n):
        manual = manual_logits(model, run.cache[f"blocks.{i}.resid_post"][0])
        torch.testing.assert_close(lens.logits[i + 1], manual, rtol=1e-4, atol=atol)
        torch.testing.assert_close(lens.log_probs[i + 1], manual.log_softmax(-1), rtol=1e-4, atol=atol)
        torch.testing.assert_close(lens.probs[i + 1], manual.softmax(-1), rtol=1e-4, atol=atol)
    # The embedding row is the lens of the embeddings, looked up by hand: W_E[tokens], plus the learned
    # position embedding W_pos[0..pos-1] where the model has one (GPT-2); that is what block 0 reads.
    ids = run.tokens[0]
    emb = model.module.get_input_embeddings().weight[ids].detach().float()
    if "pos_embed" in model.sites():
        emb = emb + model.site("pos_embed").module.weight[: len(ids)].detach().float()
    torch.testing.assert_close(run.cache["blocks.0.resid_pre"][0].float(), emb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(run.cache["embed"][0].float(), emb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lens.logits[0], manual_logits(model, emb), rtol=1e-4, atol=atol)
    torch.testing.assert_close(
        lens.log_probs[0], manual_logits(model, emb).log_softmax(-1), rtol=1e-4, atol=atol
    )
    return lens


def test_logits_log_probs_and_embed_row_match_manual_readout(model):
    _check_against_manual(model, PROMPT, atol=1e-4)


def test_embedded_model_matches_manual_readout():
    from _models import embedded_model

    model = embedded_model()
    lens = _check_against_manual(model, "The Eiffel Tower is in the city of", atol=2e-3)
    assert model.str_tokens(lens.logits[-1, -1].argmax().reshape(1))[0] == " Paris"


def test_defaults_keep_one_row_per_block_and_no_logits(model):
    plain = tsi.lens.logit_lens(model, PROMPT)
    full = tsi.lens.logit_lens(model, PROMPT, include_embed=True, return_logits=True)
    assert (
        plain.logits is None
        and plain.n_layers == model.cfg.n_layers
        and full.n_layers == model.cfg.n_layers + 1
    )
    torch.testing.assert_close(full.probs[1:], plain.probs)
    torch.testing.assert_close(plain.log_probs, full.log_probs[1:], rtol=1e-4, atol=1e-4)
    part = tsi.lens.logit_lens(model, PROMPT, include_embed=True, return_logits=True, positions=[-1])
    assert part.logits is not None
    torch.testing.assert_close(part.logits, full.logits[:, -1:])
    d = full.to_dict()
    assert d["layers"][0] == "blocks.0.resid_pre" and len(d["value"]) == model.cfg.n_layers + 1
    assert "emb" in full.to_html() and "logits" not in d


def test_bad_batch_size(model):
    with pytest.raises(tsi.InputError, match="batch_size"):
        tsi.lens.logit_lens(model, PROMPT, batch_size=0)
