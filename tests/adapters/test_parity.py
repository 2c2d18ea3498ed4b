"""Every registered adapter (and the generic fallback) against tiny random models built from HF configs.

Each architecture is checked for: hook-free parity of the logits, the shape of every canonical site,
the residual-stream bookkeeping of its block style, and the per-head decomposition of the attention
output projection (``head_output_weights``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torch_shard_interpret as tsi
from _arch_cases import ARCHS, EMBED_NOT_RESID, MISSING, B, D, F, H, L, P, V, transformers
from torch_shard_interpret.adapters import generic_adapter
from torch_shard_interpret.attribution import head_output_weights


def test_adapter_and_block_style(case):
    assert case.model.adapter is not None
    assert case.model.adapter.name == case.name
    assert case.model.cfg.block_style == case.style
    assert case.n_layers == L


def test_noop_run_is_bitwise_identical(case):
    assert torch.equal(case.run_default.logits, case.ref_default)
    assert torch.equal(case.run.logits, case.ref)


def test_every_canonical_site_has_its_shape(case):
    cfg = case.model.cfg
    n_heads, d_head = cfg.n_heads, cfg.d_head
    assert n_heads == H and d_head == 16
    flat = case.model.adapter.mlp_flat
    for top in {"embed", "final_norm", "logits"} - MISSING.get(case.key, set()):
        assert top in case.cache, top
    for name, value in case.cache.items():
        if ":" in name:
            continue
        kind = name.split(".", 2)[-1] if name.startswith("blocks.") else name
        expected = {
            "resid_pre": (B, P, D),
            "resid_post": (B, P, D),
            "attn.out": (B, P, D),
            "mlp.out": (B * P, D) if flat else (B, P, D),
            "embed": (B, P, D),
            "final_norm": (B, P, D),
            "attn.z": (B, P, n_heads, d_head),
            "mlp.post": (B * P, F) if flat else (B, P, F),
            "logits": (B, P, V),
            "attn.pattern": (B, n_heads, P, P),
            "attn.scores": (B, n_heads, P, P),
            "attn.q": (B, P, n_heads, d_head),
            "attn.k": (B, P, n_heads, d_head),  # per query head, also under grouped-query attention
            "attn.v": (B, P, n_heads, d_head),
            "resid_mid": (B * P, D) if flat else (B, P, D),
            "ln1.scale": (B, P, 1),
            "ln2.scale": (B * P, 1) if flat and case.style != "post_norm" else (B, P, 1),
            "final_norm.scale": (B, P, 1),
            "pos_embed": (1, P, D) if case.key in ("gpt2", "bert") else (B, P, D),
        }[kind]
        assert tuple(value.shape) == expected, name
    per_block = {"resid_pre", "resid_post", "attn.z", "attn.pattern", "attn.out", "mlp.post", "mlp.out"}
    if case.model.adapter.mlp_down is None:  # fused MoE experts: no module sees mlp.post
        per_block.discard("mlp.post")
    for i in range(L):
        for kind in per_block:
            assert f"blocks.{i}.{kind}" in case.cache
    # Patterns are probabilities over keys (causal models: zero above the diagonal).
    pattern = case.cache["blocks.0.attn.pattern"]
    torch.testing.assert_close(pattern.sum(-1), torch.ones(B, n_heads, P))


def test_residual_stream_is_one_chain(case):
    for i in range(L - 1):
        assert torch.equal(case.cache[f"blocks.{i}.resid_post"], case.cache[f"blocks.{i + 1}.resid_pre"])
    if case.key not in EMBED_NOT_RESID:
        assert torch.equal(case.cache["embed"], case.cache["blocks.0.resid_pre"])


def test_logits_site_is_the_unembedding_output(case):
    """``logits`` is the unembedding's output; Gemma 2 soft-caps it and Cohere scales it afterwards."""
    site, returned = case.cache["logits"], case.run.logits
    config = case.module.config
    if getattr(config, "final_logit_softcapping", None):
        cap = config.final_logit_softcapping
        torch.testing.assert_close(torch.tanh(site / cap) * cap, returned)
    elif getattr(config, "logit_scale", None):
        torch.testing.assert_close(site * config.logit_scale, returned)
    else:
        assert torch.equal(site, returned)


def _mlp_out(case, i):
    return case.cache[f"blocks.{i}.mlp.out"].reshape(B, P, D)


@torch.no_grad()
def test_block_decomposes_into_attn_and_mlp(case):
    c = case.cache
    for i in range(L):
        mods = case.model.block_modules(i)
        pre, post = c[f"blocks.{i}.resid_pre"], c[f"blocks.{i}.resid_post"]
        attn_out, mlp_out = c[f"blocks.{i}.attn.out"], _mlp_out(case, i)
        if case.style == "post_norm":
            mid = mods["ln1"](pre + attn_out)
            torch.testing.assert_close(mods["ln2"](mid + mlp_out), post, atol=1e-5, rtol=1e-5)
            continue
        torch.testing.assert_close(pre + attn_out + mlp_out, post, atol=1e-5, rtol=1e-5)
        if case.mlp_path(i) is None:
            continue
        mlp_in = c[f"{case.mlp_path(i)}:input"]
        ln2 = mods["ln2"] or nn.Identity()
        if case.style == "parallel":  # the MLP reads resid_pre, not resid_pre + attn.out
            torch.testing.assert_close(mlp_in, ln2(pre), atol=1e-6, rtol=1e-6)
        else:
            torch.testing.assert_close(mlp_in, ln2(pre + attn_out), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_heads_sum_to_the_output_projection(case):
    adapter = case.model.adapter
    for i in range(L):
        w_o, b_o = head_output_weights(case.model, i)
        assert tuple(w_o.shape) == (H, 16, D)
        z = case.cache[f"blocks.{i}.attn.z"]
        per_head = torch.einsum("bphd,hdm->bphm", z, w_o)
        total = per_head.sum(2) + (0 if b_o is None else b_o)
        projected = case.cache[case.raw_o_proj(i)]
        torch.testing.assert_close(total, projected, atol=1e-5, rtol=1e-5)
        if adapter.attn_out in (None, adapter.o_proj):  # no post-attention norm between them
            torch.testing.assert_close(total, case.cache[f"blocks.{i}.attn.out"], atol=1e-5, rtol=1e-5)


# ---- the generic fallback on a module that is not Hugging Face --------------------------------------
class TinyAttention(nn.Module):
    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.num_heads, self.d_head = n_heads, d // n_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x):
        b, p, d = x.shape
        q, k, v = self.qkv(x).view(b, p, 3, self.num_heads, self.d_head).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / self.d_head**0.5
        scores = scores.masked_fill(torch.ones(p, p, dtype=torch.bool).triu(1), float("-inf"))
        pattern = scores.softmax(-1)
        z = (pattern @ v).transpose(1, 2).reshape(b, p, d)
        return self.out_proj(z), pattern


class TinyMLP(nn.Module):
    def __init__(self, d: int, d_mlp: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d, d_mlp), nn.GELU(), nn.Linear(d_mlp, d)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TinyBlock(nn.Module):
    def __init__(self, d: int, n_heads: int, d_mlp: int):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(d), TinyAttention(d, n_heads)
        self.ln2, self.mlp = nn.LayerNorm(d), TinyMLP(d, d_mlp)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))[0]
        return x + self.mlp(self.ln2(x))


class TinyTransformer(nn.Module):
    def __init__(self, vocab=V, d=D, n_heads=H, d_mlp=F, n_layers=3):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList([TinyBlock(d, n_heads, d_mlp) for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(d)
        self.unembed = nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.ln_f(x))


@torch.no_grad()
def test_generic_adapter_on_a_hand_written_transformer():
    torch.manual_seed(0)
    module = TinyTransformer().eval()
    adapter = generic_adapter(module)
    assert adapter is not None and adapter.name == "generic"
    assert (adapter.embed, adapter.blocks, adapter.final_norm, adapter.unembed) == (
        "embed",
        "blocks",
        "ln_f",
        "unembed",
    )
    assert (adapter.attn, adapter.o_proj, adapter.mlp, adapter.mlp_down) == (
        "attn",
        "attn.out_proj",
        "mlp",
        "mlp.fc2",
    )
    assert (adapter.ln1, adapter.ln2, adapter.n_heads) == ("ln1", "ln2", H)

    model = tsi.wrap(module)
    assert model.adapter.name == "generic"
    ids = torch.randint(0, V, (B, P), generator=torch.Generator().manual_seed(1))
    ref = module(ids)
    canonical = [s for s in model.sites() if ":" not in s]
    # embed, final_norm.scale, final_norm, logits; per block the 7 classic sites plus ln1.scale, attn.scores,
    # resid_mid and ln2.scale (the fused `qkv` has no name the generic adapter knows for q/k/v)
    assert len(canonical) == 4 + 11 * 3
    run = model.run(ids, cache=canonical + ["blocks.1.attn.out_proj:output"])
    assert torch.equal(run.logits, ref)
    c = run.cache
    assert c["blocks.1.attn.z"].shape == (B, P, H, D // H)
    assert c["blocks.1.attn.pattern"].shape == (B, H, P, P)
    assert c["blocks.1.mlp.post"].shape == (B, P, F)
    assert c["logits"].shape == (B, P, V)
    assert torch.equal(c["embed"], c["blocks.0.resid_pre"])
    for i in range(2):
        assert torch.equal(c[f"blocks.{i}.resid_post"], c[f"blocks.{i + 1}.resid_pre"])
        total = c[f"blocks.{i}.resid_pre"] + c[f"blocks.{i}.attn.out"] + c[f"blocks.{i}.mlp.out"]
        torch.testing.assert_close(total, c[f"blocks.{i}.resid_post"], atol=1e-5, rtol=1e-5)
    w_o, b_o = head_output_weights(model, 1)
    heads = torch.einsum("bphd,hdm->bpm", c["blocks.1.attn.z"], w_o) + b_o
    torch.testing.assert_close(heads, c["blocks.1.attn.out_proj:output"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(heads, c["blocks.1.attn.out"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.module.ln_f(c["blocks.2.resid_post"]), c["final_norm"])


def test_generic_adapter_gives_up_without_blocks():
    mlp = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 10))
    assert generic_adapter(mlp) is None
    plain_list = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])  # blocks without attention or MLP
    assert generic_adapter(plain_list) is None
    model = tsi.wrap(mlp)
    assert model.adapter is None
    assert all(":" in s for s in model.sites())


# The generic fallback, asked about registered architectures, finds the same modules as their adapters.
_SAME_AS_REGISTERED = [
    "llama",
    "qwen3",
    "phi3",
    "gemma",
    "gemma2",
    "gemma3",
    "olmo2",
    "gpt_neox",
    "gptj",
    "opt",
    "gpt2",
]
_FIELDS = ("blocks", "attn", "o_proj", "mlp", "mlp_down", "attn_out", "mlp_out", "final_norm", "unembed")


@pytest.mark.parametrize("key", _SAME_AS_REGISTERED)
def test_generic_agrees_with_registered_adapters(key):
    cfg_cls, kwargs, model_cls, _, _ = ARCHS[key]
    config = getattr(transformers, cfg_cls)(**kwargs)
    with torch.device("meta"):
        module = transformers.AutoModelForCausalLM.from_config(config)
    registered = tsi.adapters.adapter_for(module)
    generic = generic_adapter(module)
    assert generic is not None
    for field in _FIELDS:
        want = getattr(registered, field)
        got = getattr(generic, field)
        if field in ("attn_out", "mlp_out"):  # None means "the attn/mlp module itself"
            want = want or getattr(registered, field[:-4])
            got = got or getattr(generic, field[:-4])
        assert got == want, (field, got, want)
