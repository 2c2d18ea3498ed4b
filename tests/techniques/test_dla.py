"""Direct logit attribution: exact additivity, heads that sum to their layer, and one real-model check."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

PROMPT = "when mary and john went to the store john gave a drink to"
IOI = "When Mary and John went to the store, John gave a drink to"


def _model(arch: str):
    return tsi.wrap(tiny_hf_model(arch), tokenizer=tiny_tokenizer())


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("baseline", [None, " john"])
def test_exact_additivity(arch, baseline):
    model = _model(arch)
    dla = tsi.attribution.direct_logit_attribution(model, PROMPT, target=" mary", baseline=baseline)
    n = model.cfg.n_layers
    assert set(dla.components) == {"embed", *(f"blocks.{i}.{k}" for i in range(n) for k in ("attn", "mlp"))}
    assert sum(dla.components.values()) + dla.remainder == dla.total  # bit for bit
    logits = model.run(PROMPT).logits[0, -1]
    mary, john = model.token_id(" mary"), model.token_id(" john")
    expected = logits[mary] - (logits[john] if baseline else 0.0)
    assert dla.total == pytest.approx(float(expected), abs=1e-6)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_heads_and_bias_sum_to_attention(arch):
    model = _model(arch)
    dla = tsi.attribution.direct_logit_attribution(model, PROMPT, " mary")
    assert dla.heads.shape == (model.cfg.n_layers, model.cfg.n_heads)
    for i in range(model.cfg.n_layers):
        assert float(dla.heads[i].sum() + dla.head_bias[i]) == pytest.approx(
            dla.components[f"blocks.{i}.attn"], abs=1e-5
        )
    per = dla.per_layer()
    assert per["attn"].shape == per["mlp"].shape == (model.cfg.n_layers,)
    layer, head, value = dla.top_heads(1)[0]
    assert abs(value) == pytest.approx(float(dla.heads.abs().max()))


def test_llama_remainder_is_rounding_only():
    """RMSNorm without bias and no unembedding bias: the frozen-scale components explain the whole logit."""
    model = _model("llama")
    for target in (" mary", " store", None):
        dla = tsi.attribution.direct_logit_attribution(model, PROMPT, target)
        assert abs(dla.remainder) < 1e-4 * max(1.0, abs(dla.total))


def test_layernorm_bias_lands_in_remainder():
    """GPT-2's final LayerNorm: components are mean-centred; its bias is the remainder."""
    module = tiny_hf_model("gpt2")
    with torch.no_grad():
        module.transformer.ln_f.weight.uniform_(0.5, 1.5)
        module.transformer.ln_f.bias.normal_(0.0, 20.0)
    model = tsi.wrap(module, tokenizer=tiny_tokenizer())
    dla = tsi.attribution.direct_logit_attribution(model, PROMPT, " mary", " john")
    with torch.no_grad():
        w_u = module.lm_head.weight
        direction = w_u[model.token_id(" mary")] - w_u[model.token_id(" john")]
        bias_term = float(module.transformer.ln_f.bias @ direction)
    assert abs(bias_term) > 0.05
    assert dla.remainder == pytest.approx(bias_term, rel=1e-3, abs=1e-5)


def test_position_and_html():
    model = _model("llama")
    dla = tsi.attribution.direct_logit_attribution(model, PROMPT, " mary", position=3)
    assert dla.position == 3 and dla.str_tokens[3] == "john"
    assert dla.total == pytest.approx(
        float(model.run(PROMPT).logits[0, 3, model.token_id(" mary")]), abs=1e-6
    )
    html = dla.to_html()
    assert "<svg" in html and "http://" not in html and "https://" not in html


def test_bad_inputs():
    model = _model("llama")
    with pytest.raises(tsi.InputError, match="not one"):
        tsi.attribution.direct_logit_attribution(model, PROMPT, "mary john")
    with pytest.raises(tsi.InputError, match="outside the prompt"):
        tsi.attribution.direct_logit_attribution(model, PROMPT, " mary", position=50)
    with pytest.raises(tsi.InputError, match="outside the vocabulary"):
        tsi.attribution.direct_logit_attribution(model, PROMPT, 10_000)


def test_real_model_ioi():
    """SmolLM2-135M on the IOI prompt: predicts ' Mary', and DLA of ' Mary' - ' John' is positive and additive."""
    from _models import embedded_model

    model = embedded_model()  # `make test` installs it: a missing model is a failure, not a skip
    logits = model.run(IOI).logits[0, -1]
    assert model.tokenizer.decode([int(logits.argmax())]) == " Mary"
    dla = tsi.attribution.direct_logit_attribution(model, IOI, " Mary", " John")
    assert dla.total > 2.0
    assert sum(dla.components.values()) + dla.remainder == dla.total
    assert abs(dla.remainder) < 1e-3
    lens = tsi.lens.logit_lens(model, IOI, target=" Mary", positions=[-1])
    assert int(lens.rank()[-1, 0]) == 0


def test_top_components_are_the_largest_by_absolute_value_in_order():
    dla = tsi.attribution.direct_logit_attribution(_model("llama"), PROMPT, target=" mary", baseline=" john")
    by_size = sorted(dla.components.items(), key=lambda kv: abs(kv[1]), reverse=True)
    assert dla.top_components(3) == by_size[:3]
    assert dla.top_components(len(by_size) + 5) == by_size  # k past the end: all of them
    sizes = [abs(v) for _, v in dla.top_components()]
    assert len(sizes) == 5 and sizes == sorted(sizes, reverse=True)
