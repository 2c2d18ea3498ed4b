"""DLA at an intermediate layer (against a by-hand decomposition of that residual) and over a batch of prompts."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

PROMPT = "when mary and john went to the store john gave a drink to"


def _model(arch: str, n_layers: int = 3):
    cfg = {"num_hidden_layers": n_layers} if arch == "llama" else {"n_layer": n_layers}
    return tsi.wrap(tiny_hf_model(arch, **cfg), tokenizer=tiny_tokenizer())


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("layer", [0, 1])
def test_intermediate_layer_matches_manual_decomposition(arch, layer):
    model = _model(arch)
    assert model.cfg.n_layers == 3
    dla = tsi.attribution.direct_logit_attribution(model, PROMPT, " mary", " john", layer=layer, position=-2)
    mary, john = model.token_id(" mary"), model.token_id(" john")
    sites = ["embed", *(f"blocks.{i}.{k}.out" for i in range(layer + 1) for k in ("attn", "mlp"))]
    run = model.run(PROMPT, cache=[*sites, f"blocks.{layer}.resid_post"])
    parts = {s: run.cache[s][0, -2].float() for s in sites}
    resid = run.cache[f"blocks.{layer}.resid_post"][0, -2].float()
    torch.testing.assert_close(sum(parts.values()), resid, rtol=1e-5, atol=1e-5)  # the residual is their sum

    # By hand: the final norm with its scale frozen on this residual, then the W_U column difference.
    norm, head = model.site("final_norm").module, model.site("logits").module
    centred = isinstance(norm, torch.nn.LayerNorm)
    eps = float(getattr(norm, "eps", getattr(norm, "variance_epsilon", 0.0)))
    rc = resid - resid.mean() if centred else resid
    s = torch.sqrt((rc * rc).mean() + eps)
    direction = (norm.weight.float() * (head.weight[mary] - head.weight[john]).float() / s).detach()

    def by_hand(c: torch.Tensor) -> float:
        return float(((c - c.mean()) if centred else c) @ direction)

    assert dla.layer == layer and dla.n_layers == layer + 1 and dla.heads.shape[0] == layer + 1
    assert set(dla.components) == {
        "embed",
        *(f"blocks.{i}.{k}" for i in range(layer + 1) for k in ("attn", "mlp")),
    }
    for name, vec in parts.items():
        key = name.removesuffix(".out")
        assert dla.components[key] == pytest.approx(by_hand(vec), abs=1e-5), key
    assert dla.scale == pytest.approx(float(s), rel=1e-4)
    # The total is the logit lens's logit difference at that layer, and the decomposition adds up to it.
    lens = tsi.lens.logit_lens(model, PROMPT, return_logits=True, positions=[-2])
    assert lens.logits is not None
    assert dla.total == pytest.approx(
        float(lens.logits[layer, 0, mary] - lens.logits[layer, 0, john]), abs=1e-5
    )
    assert sum(dla.components.values()) + dla.remainder == dla.total
    assert f"blocks.{layer}.resid_post" in dla.label and dla.to_dict()["layer"] == layer
    assert "the residual after block" in dla.to_html()


def test_last_layer_by_index_equals_default_up_to_output_transforms():
    model = _model("llama")
    full = tsi.attribution.direct_logit_attribution(model, PROMPT, " mary")
    at_last = tsi.attribution.direct_logit_attribution(model, PROMPT, " mary", layer=-1)
    assert full.layer is None and at_last.layer == 2
    assert at_last.total == pytest.approx(full.total, abs=1e-5)
    for k, v in full.components.items():
        assert at_last.components[k] == pytest.approx(v, abs=1e-5)


def test_bad_layer():
    model = _model("llama")
    with pytest.raises(tsi.InputError, match="outside the model's blocks"):
        tsi.attribution.direct_logit_attribution(model, PROMPT, " mary", layer=3)
    with pytest.raises(tsi.InputError, match="block index"):
        tsi.attribution.direct_logit_attribution(model, PROMPT, " mary", layer="2")  # type: ignore[arg-type]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batch_equals_one_prompt_at_a_time(arch):
    """Prompts of different lengths in one padded forward: each result is that prompt's own DLA."""
    model = _model(arch)
    prompts = [PROMPT, "the cat sat on the mat and", "mary gave john a"]
    targets = [" mary", " the", " drink"]
    batch = tsi.attribution.dla_batch(model, prompts, targets, " john", layer=1, batch_size=2)
    assert len(batch) == 3
    for prompt, target, res in zip(prompts, targets, batch, strict=True):
        one = tsi.attribution.direct_logit_attribution(model, prompt, target, " john", layer=1)
        assert res.position == one.position and res.str_tokens == one.str_tokens and res.layer == 1
        assert res.total == pytest.approx(one.total, abs=1e-4)
        assert res.components == pytest.approx(one.components, abs=1e-4)
        torch.testing.assert_close(res.heads, one.heads, rtol=1e-4, atol=1e-4)
        assert sum(res.components.values()) + res.remainder == res.total
    top = tsi.attribution.dla_batch(model, prompts[:2])  # no target: each prompt's own top prediction
    for prompt, res in zip(prompts[:2], top, strict=True):
        assert res.target == int(model.run(prompt).logits[0, -1].argmax())


def test_batch_bad_inputs():
    model = _model("llama")
    with pytest.raises(tsi.InputError, match="one token or one per prompt"):
        tsi.attribution.dla_batch(model, [PROMPT, "the cat"], [" mary"])
    with pytest.raises(tsi.InputError, match="non-empty list"):
        tsi.attribution.dla_batch(model, [])
    with pytest.raises(tsi.InputError, match="dla_batch"):
        tsi.attribution.direct_logit_attribution(model, [PROMPT, "the cat"], " mary")


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_neurons_sum_to_their_mlp_and_match_by_hand(arch):
    model = _model(arch)
    dla = tsi.attribution.direct_logit_attribution(model, PROMPT, " mary", " john", layer=1)
    per, bias = tsi.attribution.neuron_attribution(model, PROMPT, " mary", " john", block=1, layer=1)
    run = model.run(PROMPT, cache=["blocks.1.mlp.post", "blocks.1.resid_post"])
    assert per.shape == run.cache["blocks.1.mlp.post"].shape[-1:]
    assert float(per.sum()) + bias == pytest.approx(dla.components["blocks.1.mlp"], abs=1e-4)
    # Neuron 3 by hand: its activation times its W_down column, read out through the frozen norm.
    down = model.site("blocks.1.mlp.post").module
    col = (down.weight[:, 3] if arch == "llama" else down.weight[3]).detach().float()  # Conv1D is [in, out]
    norm, head = model.site("final_norm").module, model.site("logits").module
    resid = run.cache["blocks.1.resid_post"][0, -1].float()
    if arch == "gpt2":
        resid, col = resid - resid.mean(), col - col.mean()
    eps = float(getattr(norm, "eps", getattr(norm, "variance_epsilon", 0.0)))
    s = torch.sqrt((resid * resid).mean() + eps)
    w_dir = (head.weight[model.token_id(" mary")] - head.weight[model.token_id(" john")]).detach().float()
    expected = (
        run.cache["blocks.1.mlp.post"][0, -1, 3].float() * (col * norm.weight.detach().float() / s) @ w_dir
    )
    assert float(per[3]) == pytest.approx(float(expected), abs=1e-5)
    with pytest.raises(tsi.InputError, match="comes after the layer read"):
        tsi.attribution.neuron_attribution(model, PROMPT, " mary", block=2, layer=1)
