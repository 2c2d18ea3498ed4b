"""Reference LLaMA-style and GPT-2-style decoders in Equinox: the same module paths, call signature and
forwards (``_forward``, ``_ops``) as the Flax NNX ones in ``_nnx``, as immutable pytrees."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from . import _forward as fw
from . import _ops as ops
from ._config import DecoderConfig


def _a(x: Any) -> jax.Array:
    return jnp.asarray(x)


class Hook(eqx.Module):
    """The identity: a named place for ``attn.pattern``."""

    def __call__(self, x):
        return x


class Linear(eqx.Module):
    weight: jax.Array
    bias: jax.Array | None

    def __init__(self, w, b=None):
        self.weight, self.bias = _a(w), None if b is None else _a(b)

    def __call__(self, x):
        return ops.linear(x, self.weight, self.bias)


class Embed(eqx.Module):
    weight: jax.Array

    def __init__(self, w):
        self.weight = _a(w)

    def table(self):
        return self.weight

    def __call__(self, ids):
        return jnp.take(self.weight, ids, axis=0)


class RMSNorm(eqx.Module):
    weight: jax.Array
    eps: float = eqx.field(static=True)

    def __init__(self, w, eps):
        self.weight, self.eps = _a(w), eps

    def __call__(self, x):
        return ops.rms_norm(x, self.weight, self.eps)


class LayerNorm(eqx.Module):
    weight: jax.Array
    bias: jax.Array
    eps: float = eqx.field(static=True)

    def __init__(self, w, b, eps):
        self.weight, self.bias, self.eps = _a(w), _a(b), eps

    def __call__(self, x):
        return ops.layer_norm(x, self.weight, self.bias, self.eps)


class Unembed(eqx.Module):
    weight: jax.Array | None

    def __init__(self, w=None):
        self.weight = None if w is None else _a(w)

    def __call__(self, x, tied=None):
        return ops.linear(x, tied if self.weight is None else self.weight)


class LlamaAttention(eqx.Module):
    q_proj: Linear
    k_proj: Linear
    v_proj: Linear
    o_proj: Linear
    pattern: Hook
    cfg: DecoderConfig = eqx.field(static=True)

    def __init__(self, t: dict, pre: str, cfg: DecoderConfig):
        self.q_proj, self.k_proj = Linear(t[pre + "q_proj.weight"]), Linear(t[pre + "k_proj.weight"])
        self.v_proj, self.o_proj = Linear(t[pre + "v_proj.weight"]), Linear(t[pre + "o_proj.weight"])
        self.pattern, self.cfg = Hook(), cfg

    __call__ = fw.llama_attention


class LlamaMLP(eqx.Module):
    gate_proj: Linear
    up_proj: Linear
    down_proj: Linear

    def __init__(self, t: dict, pre: str):
        self.gate_proj, self.up_proj = Linear(t[pre + "gate_proj.weight"]), Linear(t[pre + "up_proj.weight"])
        self.down_proj = Linear(t[pre + "down_proj.weight"])

    __call__ = fw.llama_mlp


class LlamaBlock(eqx.Module):
    input_layernorm: RMSNorm
    self_attn: LlamaAttention
    post_attention_layernorm: RMSNorm
    mlp: LlamaMLP

    def __init__(self, t: dict, i: int, cfg: DecoderConfig):
        pre = f"model.layers.{i}."
        self.input_layernorm = RMSNorm(t[pre + "input_layernorm.weight"], cfg.eps)
        self.self_attn = LlamaAttention(t, pre + "self_attn.", cfg)
        self.post_attention_layernorm = RMSNorm(t[pre + "post_attention_layernorm.weight"], cfg.eps)
        self.mlp = LlamaMLP(t, pre + "mlp.")

    __call__ = fw.llama_block


class LlamaModel(eqx.Module):
    embed_tokens: Embed
    layers: list
    norm: RMSNorm
    lm_head: Unembed
    config: DecoderConfig = eqx.field(static=True)

    def __init__(self, cfg: DecoderConfig, t: dict):
        self.config = cfg
        self.embed_tokens = Embed(t["model.embed_tokens.weight"])
        self.layers = [LlamaBlock(t, i, cfg) for i in range(cfg.n_layers)]
        self.norm = RMSNorm(t["model.norm.weight"], cfg.eps)
        self.lm_head = Unembed(None if cfg.tie else t["lm_head.weight"])

    __call__ = fw.llama_model


class GPT2Embed(eqx.Module):
    wte: Embed
    wpe: Embed

    def __init__(self, t: dict):
        self.wte, self.wpe = Embed(t["wte.weight"]), Embed(t["wpe.weight"])

    __call__ = fw.gpt2_embed


class GPT2Attention(eqx.Module):
    c_attn: Linear
    c_proj: Linear
    pattern: Hook
    cfg: DecoderConfig = eqx.field(static=True)

    def __init__(self, t: dict, pre: str, cfg: DecoderConfig):
        self.c_attn = Linear(t[pre + "c_attn.weight"], t[pre + "c_attn.bias"])
        self.c_proj = Linear(t[pre + "c_proj.weight"], t[pre + "c_proj.bias"])
        self.pattern, self.cfg = Hook(), cfg

    __call__ = fw.gpt2_attention


class GPT2MLP(eqx.Module):
    c_fc: Linear
    c_proj: Linear

    def __init__(self, t: dict, pre: str):
        self.c_fc = Linear(t[pre + "c_fc.weight"], t[pre + "c_fc.bias"])
        self.c_proj = Linear(t[pre + "c_proj.weight"], t[pre + "c_proj.bias"])

    __call__ = fw.gpt2_mlp


class GPT2Block(eqx.Module):
    ln_1: LayerNorm
    attn: GPT2Attention
    ln_2: LayerNorm
    mlp: GPT2MLP

    def __init__(self, t: dict, i: int, cfg: DecoderConfig):
        pre = f"h.{i}."
        self.ln_1 = LayerNorm(t[pre + "ln_1.weight"], t[pre + "ln_1.bias"], cfg.eps)
        self.attn = GPT2Attention(t, pre + "attn.", cfg)
        self.ln_2 = LayerNorm(t[pre + "ln_2.weight"], t[pre + "ln_2.bias"], cfg.eps)
        self.mlp = GPT2MLP(t, pre + "mlp.")

    __call__ = fw.gpt2_block


class GPT2Model(eqx.Module):
    embed: GPT2Embed
    h: list
    ln_f: LayerNorm
    lm_head: Unembed
    config: DecoderConfig = eqx.field(static=True)

    def __init__(self, cfg: DecoderConfig, t: dict):
        self.config = cfg
        self.embed = GPT2Embed(t)
        self.h = [GPT2Block(t, i, cfg) for i in range(cfg.n_layers)]
        self.ln_f = LayerNorm(t["ln_f.weight"], t["ln_f.bias"], cfg.eps)
        self.lm_head = Unembed(None)

    __call__ = fw.gpt2_model


def build(cfg: DecoderConfig, tensors: dict[str, Any]) -> eqx.Module:
    return (LlamaModel if cfg.arch == "llama" else GPT2Model)(cfg, tensors)
