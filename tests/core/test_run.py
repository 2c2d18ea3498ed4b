"""Model.run: no-op parity, caching, early stop, gradients, text input."""

from __future__ import annotations

import warnings

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer


@pytest.fixture(scope="module")
def model():
    return tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer())


@pytest.fixture(scope="module")
def ids():
    return torch.randint(4, 128, (2, 7), generator=torch.Generator().manual_seed(0))


def test_noop_run_is_bitwise_identical(model, ids):
    with torch.no_grad():
        plain = model.module(input_ids=ids).logits
    run = model.run(ids, cache="blocks.*")  # every block site; the glob skips patterns (sdpa attention)
    assert torch.equal(run.logits, plain)


def test_cache_stack_and_shapes(model, ids):
    run = model.run(ids, cache="blocks.*.resid_post")
    stacked = run.cache.stack("blocks.*.resid_post")
    assert stacked.shape == (2, 2, 7, 64)
    assert torch.equal(stacked[1], run.cache["blocks.1.resid_post"])
    assert list(run.cache) == ["blocks.0.resid_post", "blocks.1.resid_post"]


def test_cache_device_and_to(model, ids):
    run = model.run(ids, cache="embed", cache_device="cpu")
    assert run.cache["embed"].device.type == "cpu"
    assert run.cache.to(torch.float64)["embed"].dtype == torch.float64


def test_early_stop_skips_later_modules(model, ids):
    calls = []
    handle = model.module.lm_head.register_forward_hook(lambda *a: calls.append(1))
    try:
        run = model.run(ids, cache="blocks.0.resid_post", return_logits=False)
    finally:
        handle.remove()
    assert run.logits is None and not calls
    assert torch.equal(
        run.cache["blocks.0.resid_post"],
        model.run(ids, cache="blocks.0.resid_post").cache["blocks.0.resid_post"],
    )


def test_grads_match_manual_autograd(model, ids):
    target = 5
    run = model.run(
        ids, cache=["blocks.0.resid_post", "blocks.1.attn.z"], grad=lambda r: r.logits[0, -1, target]
    )
    # Manual: plain torch hooks keep the activations, autograd gives the reference gradients.
    kept = {}

    def keep_out(m, a, o):
        kept["resid"] = o

    def keep_in(m, a):
        kept["z"] = a[0]

    block = model.module.model.layers[0]
    h1 = block.register_forward_hook(keep_out)
    h2 = model.module.model.layers[1].self_attn.o_proj.register_forward_pre_hook(keep_in)
    try:
        logits = model.module(input_ids=ids).logits
    finally:
        h1.remove()
        h2.remove()
    g_resid, g_z = torch.autograd.grad(logits[0, -1, target], [kept["resid"], kept["z"]])
    torch.testing.assert_close(run.grads["blocks.0.resid_post"], g_resid)
    torch.testing.assert_close(run.grads["blocks.1.attn.z"], g_z.unflatten(-1, (4, -1)))
    assert not run.cache["blocks.0.resid_post"].requires_grad and not run.logits.requires_grad
    assert run.grads["blocks.0.resid_post"][1].abs().sum() == 0  # row 1 does not feed row 0's logit


def test_grads_flow_when_params_are_frozen(model, ids):
    for p in model.module.parameters():
        p.requires_grad_(False)
    try:
        run = model.run(ids, cache="blocks.*.resid_post", grad=lambda r: r.logits[:, -1, 3].sum())
    finally:
        for p in model.module.parameters():
            p.requires_grad_(True)
    assert all(g.abs().sum() > 0 for g in run.grads.values())


def test_grad_under_inference_mode_is_a_clear_error(model, ids):
    with torch.inference_mode(), pytest.raises(tsi.GradModeError, match="inference_mode"):
        model.run(ids, cache="embed", grad=lambda r: r.logits.sum())


def test_text_input_pads_with_an_attention_mask(model):
    run = model.run(["the cat", "when mary and john went to the store"], cache="blocks.1.resid_post")
    assert run.tokens.shape == (2, 8) and run.attention_mask[0].sum() == 2
    single = model.run("the cat")
    # the real tokens of the short prompt give the same logits as running it alone
    side = model.tokenizer.padding_side
    real = slice(None, 2) if side == "right" else slice(-2, None)
    torch.testing.assert_close(run.logits[0, real], single.logits[0], atol=1e-5, rtol=1e-5)
    assert run.str_tokens[1][:3] == ["when", "mary", "and"]


def test_generate_returns_text(model):
    text = model.generate("the cat", max_new_tokens=3)
    assert isinstance(text, str)
    texts = model.generate(["the cat", "when mary and john"], max_new_tokens=3)
    assert isinstance(texts, list) and len(texts) == 2


def test_gpt2_runs_too():
    model = tsi.wrap(tiny_hf_model("gpt2"))
    ids = torch.randint(4, 128, (1, 5))
    run = model.run(
        ids, cache="blocks.*.attn.z", interventions={"blocks.0.attn.z": tsi.Ablate("zero", heads=2)}
    )
    assert run.cache["blocks.0.attn.z"][:, :, 2].abs().sum() == 0
    assert run.cache["blocks.1.attn.z"].shape == (1, 5, 4, 16)


def test_a_glob_that_skips_attention_patterns_says_so_once():
    model = tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer())
    assert model.attention == "sdpa"
    with pytest.warns(
        UserWarning, match=r"'blocks\.\*' leaves out the 4 site\(s\) that need eager attention"
    ) as said:
        run = model.run("the cat", cache="blocks.*")
    assert len(said) == 1 and "set_attention('eager')" in str(said[0].message)
    assert "blocks.0.attn.pattern" not in run.cache and "blocks.0.resid_post" in run.cache
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time: nothing
        model.run("the cat", cache="blocks.*.attn.*")
        model.run("the cat", cache="blocks.*.resid_post")
