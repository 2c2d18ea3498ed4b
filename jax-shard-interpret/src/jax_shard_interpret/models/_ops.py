"""The arithmetic of the reference decoders, as pure ``jax.numpy`` functions shared by NNX and Equinox.

Matches Hugging Face's LLaMA and GPT-2 in float32: RMSNorm (rsqrt of the mean square), LayerNorm, default
RoPE with ``rotate_half``, grouped-query attention (KV head ``j`` serves query heads ``j*r .. j*r+r-1``),
``gelu_new`` (the tanh approximation) and an optional preallocated KV cache written at ``offset``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def linear(x: jax.Array, w: jax.Array, b: jax.Array | None = None) -> jax.Array:
    """``x @ w.T + b`` with ``w`` in the ``[out, in]`` layout of ``torch.nn.Linear``."""
    y = x @ w.T
    return y if b is None else y + b


def rms_norm(x: jax.Array, w: jax.Array, eps: float) -> jax.Array:
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return w * x32.astype(x.dtype)


def layer_norm(x: jax.Array, w: jax.Array, b: jax.Array, eps: float) -> jax.Array:
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + eps) * w + b


def rope(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotary embedding of ``x`` ``[batch, heads, pos, d_head]`` at absolute ``positions`` ``[pos]``."""
    d = x.shape[-1]
    inv = 1.0 / (theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
    freqs = positions.astype(jnp.float32)[:, None] * inv[None, :]
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    cos, sin = jnp.cos(emb).astype(x.dtype), jnp.sin(emb).astype(x.dtype)
    half = d // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def heads(x: jax.Array, n: int) -> jax.Array:
    """``[batch, pos, n * d]`` -> ``[batch, n, pos, d]``."""
    b, t, _ = x.shape
    return x.reshape(b, t, n, -1).transpose(0, 2, 1, 3)


def update_kv(kv: dict[str, jax.Array] | None, k: jax.Array, v: jax.Array, offset: Any):
    """Write ``k``/``v`` ``[batch, kv_heads, pos, d]`` into the preallocated cache at ``offset``."""
    if kv is None:
        return k, v, None
    zero = jnp.zeros((), jnp.int32)
    at = (zero, zero, jnp.asarray(offset, jnp.int32), zero)
    kk = jax.lax.dynamic_update_slice(kv["k"], k.astype(kv["k"].dtype), at)
    vv = jax.lax.dynamic_update_slice(kv["v"], v.astype(kv["v"].dtype), at)
    return kk, vv, {"k": kk, "v": vv}


def scores_to_probs(q: jax.Array, k: jax.Array, offset: Any) -> jax.Array:
    """Causal attention probabilities ``[batch, heads, q_pos, k_pos]`` (KV heads repeated for GQA)."""
    rep = q.shape[1] // k.shape[1]
    if rep > 1:
        k = jnp.repeat(k, rep, axis=1)
    s = (q @ k.transpose(0, 1, 3, 2)).astype(jnp.float32) * (q.shape[-1] ** -0.5)
    qpos = offset + jnp.arange(q.shape[2])
    allowed = jnp.arange(k.shape[2])[None, :] <= qpos[:, None]
    s = jnp.where(allowed, s, jnp.finfo(jnp.float32).min)
    return jax.nn.softmax(s, axis=-1).astype(q.dtype)


def mix(probs: jax.Array, v: jax.Array) -> jax.Array:
    """``probs @ v`` with repeated KV heads, as ``[batch, pos, heads * d_head]`` (the ``attn.z`` layout)."""
    rep = probs.shape[1] // v.shape[1]
    if rep > 1:
        v = jnp.repeat(v, rep, axis=1)
    z = probs @ v  # [b, h, t, d]
    b, h, t, d = z.shape
    return z.transpose(0, 2, 1, 3).reshape(b, t, h * d)


def gelu_new(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=True)


def init_kv(cfg: Any, batch: int, max_len: int, dtype: Any = jnp.float32) -> list[dict[str, jax.Array]]:
    """A zeroed KV cache for ``max_len`` positions: one ``{"k", "v"}`` per block."""
    shape = (batch, cfg.n_kv_heads, max_len, cfg.d_head)
    return [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in range(cfg.n_layers)]
