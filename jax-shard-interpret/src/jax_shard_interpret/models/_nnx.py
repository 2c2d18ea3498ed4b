"""Reference LLaMA-style and GPT-2-style decoders in Flax NNX, built from a dict of Hugging Face tensors.

Module paths follow the Hugging Face names without the ``model.``/``transformer.`` prefix
(``layers.3.self_attn.o_proj``, ``h.3.attn.c_proj``), so raw site names read like the checkpoint and the
``jsi.LLAMA`` / ``jsi.GPT2`` adapters give the canonical names. Call ``model(tokens)`` -> logits, or
``model(tokens, kv=cache, offset=n)`` -> ``(logits, new_cache)`` with a cache from ``init_kv``.
The composite modules' forwards live in ``_forward`` (shared with the Equinox decoders).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from . import _forward as fw
from . import _ops as ops
from ._config import DecoderConfig


def _p(a: Any) -> nnx.Param:
    return nnx.Param(jnp.asarray(a))


class Hook(nnx.Module):
    """The identity: a named place for a value that is not a module's input or output (``attn.pattern``)."""

    def __call__(self, x):
        return x


class Linear(nnx.Module):
    def __init__(self, w, b=None):
        self.weight = _p(w)
        self.bias = _p(b) if b is not None else None

    def __call__(self, x):
        return ops.linear(x, self.weight[...], None if self.bias is None else self.bias[...])


class Embed(nnx.Module):
    def __init__(self, w):
        self.weight = _p(w)

    def table(self):
        return self.weight[...]

    def __call__(self, ids):
        return jnp.take(self.weight[...], ids, axis=0)


class RMSNorm(nnx.Module):
    def __init__(self, w, eps):
        self.weight, self.eps = _p(w), eps

    def __call__(self, x):
        return ops.rms_norm(x, self.weight[...], self.eps)


class LayerNorm(nnx.Module):
    def __init__(self, w, b, eps):
        self.weight, self.bias, self.eps = _p(w), _p(b), eps

    def __call__(self, x):
        return ops.layer_norm(x, self.weight[...], self.bias[...], self.eps)


class Unembed(nnx.Module):
    """``x @ W_U``: its own ``weight`` ``[d_vocab, d_model]``, or the tied embedding passed in."""

    def __init__(self, w=None):
        self.weight = _p(w) if w is not None else None

    def __call__(self, x, tied=None):
        return ops.linear(x, tied if self.weight is None else self.weight[...])


class LlamaAttention(nnx.Module):
    def __init__(self, t: dict, pre: str, cfg: DecoderConfig):
        self.q_proj, self.k_proj = Linear(t[pre + "q_proj.weight"]), Linear(t[pre + "k_proj.weight"])
        self.v_proj, self.o_proj = Linear(t[pre + "v_proj.weight"]), Linear(t[pre + "o_proj.weight"])
        self.pattern, self.cfg = Hook(), cfg

    __call__ = fw.llama_attention


class LlamaMLP(nnx.Module):
    def __init__(self, t: dict, pre: str):
        self.gate_proj, self.up_proj = Linear(t[pre + "gate_proj.weight"]), Linear(t[pre + "up_proj.weight"])
        self.down_proj = Linear(t[pre + "down_proj.weight"])

    __call__ = fw.llama_mlp


class LlamaBlock(nnx.Module):
    def __init__(self, t: dict, i: int, cfg: DecoderConfig):
        pre = f"model.layers.{i}."
        self.input_layernorm = RMSNorm(t[pre + "input_layernorm.weight"], cfg.eps)
        self.self_attn = LlamaAttention(t, pre + "self_attn.", cfg)
        self.post_attention_layernorm = RMSNorm(t[pre + "post_attention_layernorm.weight"], cfg.eps)
        self.mlp = LlamaMLP(t, pre + "mlp.")

    __call__ = fw.llama_block


class LlamaModel(nnx.Module):
    def __init__(self, cfg: DecoderConfig, t: dict):
        self.config = cfg
        self.embed_tokens = Embed(t["model.embed_tokens.weight"])
        self.layers = nnx.List([LlamaBlock(t, i, cfg) for i in range(cfg.n_layers)])
        self.norm = RMSNorm(t["model.norm.weight"], cfg.eps)
        self.lm_head = Unembed(None if cfg.tie else t["lm_head.weight"])

    __call__ = fw.llama_model


class GPT2Embed(nnx.Module):
    def __init__(self, t: dict):
        self.wte, self.wpe = Embed(t["wte.weight"]), Embed(t["wpe.weight"])

    __call__ = fw.gpt2_embed


class GPT2Attention(nnx.Module):
    def __init__(self, t: dict, pre: str, cfg: DecoderConfig):
        self.c_attn = Linear(t[pre + "c_attn.weight"], t[pre + "c_attn.bias"])
        self.c_proj = Linear(t[pre + "c_proj.weight"], t[pre + "c_proj.bias"])
        self.pattern, self.cfg = Hook(), cfg

    __call__ = fw.gpt2_attention


class GPT2MLP(nnx.Module):
    def __init__(self, t: dict, pre: str):
        self.c_fc = Linear(t[pre + "c_fc.weight"], t[pre + "c_fc.bias"])
        self.c_proj = Linear(t[pre + "c_proj.weight"], t[pre + "c_proj.bias"])

    __call__ = fw.gpt2_mlp


class GPT2Block(nnx.Module):
    def __init__(self, t: dict, i: int, cfg: DecoderConfig):
        pre = f"h.{i}."
        self.ln_1 = LayerNorm(t[pre + "ln_1.weight"], t[pre + "ln_1.bias"], cfg.eps)
        self.attn = GPT2Attention(t, pre + "attn.", cfg)
        self.ln_2 = LayerNorm(t[pre + "ln_2.weight"], t[pre + "ln_2.bias"], cfg.eps)
        self.mlp = GPT2MLP(t, pre + "mlp.")

    __call__ = fw.gpt2_block


class GPT2Model(nnx.Module):
    def __init__(self, cfg: DecoderConfig, t: dict):
        self.config = cfg
        self.embed = GPT2Embed(t)
        self.h = nnx.List([GPT2Block(t, i, cfg) for i in range(cfg.n_layers)])
        self.ln_f = LayerNorm(t["ln_f.weight"], t["ln_f.bias"], cfg.eps)
        self.lm_head = Unembed(None)

    __call__ = fw.gpt2_model


def build(cfg: DecoderConfig, tensors: dict[str, Any]) -> nnx.Module:
    return (LlamaModel if cfg.arch == "llama" else GPT2Model)(cfg, tensors)
