"""The forward passes of the composite reference modules, shared by the NNX and Equinox classes.

Each function is a class's ``__call__``: it only calls sub-modules (whose paths are the sites) and the
arithmetic in ``_ops``, so the Flax NNX and Equinox decoders compute the same thing by construction.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _ops as ops


def _ret(out, kv):
    return out if kv is None else (out, kv)


def llama_attention(self, x, kv=None, offset=0):
    c = self.cfg
    pos = offset + jnp.arange(x.shape[1])
    q = ops.rope(ops.heads(self.q_proj(x), c.n_heads), pos, c.rope_theta)
    k = ops.rope(ops.heads(self.k_proj(x), c.n_kv_heads), pos, c.rope_theta)
    k, v, kv = ops.update_kv(kv, k, ops.heads(self.v_proj(x), c.n_kv_heads), offset)
    probs = self.pattern(ops.scores_to_probs(q, k, offset))
    return _ret(self.o_proj(ops.mix(probs, v)), kv)


def gpt2_attention(self, x, kv=None, offset=0):
    q, k, v = jnp.split(self.c_attn(x), 3, axis=-1)
    n = self.cfg.n_heads
    k, v, kv = ops.update_kv(kv, ops.heads(k, n), ops.heads(v, n), offset)
    probs = self.pattern(ops.scores_to_probs(ops.heads(q, n), k, offset))
    return _ret(self.c_proj(ops.mix(probs, v)), kv)


def llama_mlp(self, x):
    return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


def gpt2_mlp(self, x):
    return self.c_proj(ops.gelu_new(self.c_fc(x)))


def _block(ln1, attn, ln2, mlp, x, kv, offset):
    a = attn(ln1(x), kv, offset)
    a, kv = (a, None) if kv is None else a
    x = x + a
    return _ret(x + mlp(ln2(x)), kv)


def llama_block(self, x, kv=None, offset=0):
    return _block(
        self.input_layernorm, self.self_attn, self.post_attention_layernorm, self.mlp, x, kv, offset
    )


def gpt2_block(self, x, kv=None, offset=0):
    return _block(self.ln_1, self.attn, self.ln_2, self.mlp, x, kv, offset)


def gpt2_embed(self, tokens, offset=0):
    return self.wte(tokens) + self.wpe(offset + jnp.arange(tokens.shape[1]))[None]


def llama_model(self, tokens, kv=None, offset=0):
    x = self.embed_tokens(tokens)
    x, new = _blocks(self.layers, x, kv, offset)
    tied = self.embed_tokens.table() if self.config.tie else None
    return _ret(self.lm_head(self.norm(x), tied), None if kv is None else new)


def gpt2_model(self, tokens, kv=None, offset=0):
    x = self.embed(tokens, offset)
    x, new = _blocks(self.h, x, kv, offset)
    return _ret(self.lm_head(self.ln_f(x), self.embed.wte.table()), None if kv is None else new)


def _blocks(blocks, x, kv, offset):
    new = []
    for i, block in enumerate(blocks):
        x = block(x, None if kv is None else kv[i], offset)
        if kv is not None:
            x, c = x
            new.append(c)
    return x, new
