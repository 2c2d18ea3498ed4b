"""Reading the residual stream out: the final norm and the unembedding of a model with an adapter."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ._errors import ModelError
from ._model import Model


def submodule(module: Any, path: str) -> Any:
    """The module at a dotted path (list items by index)."""
    m = module
    for part in path.split(".") if path else []:
        m = m[int(part)] if part.isdigit() else getattr(m, part)
    return m


def value(p: Any) -> jax.Array:
    """The array of an NNX ``Param`` (or an array as it is)."""
    return jnp.asarray(p if isinstance(p, jax.Array) else p[...])


def parts(model: Model) -> tuple[Any, Any, jax.Array]:
    """``(final norm module, unembedding module, W_U [d_vocab, d_model])``."""
    if model.adapter is None:
        raise ModelError(
            "reading out the residual stream needs a model with an adapter (final_norm and logits)"
        )
    a = model.adapter
    norm, head = submodule(model.module, a.final_norm), submodule(model.module, a.unembed)
    w = getattr(head, "weight", None)
    if w is None:
        emb = submodule(model.module, a.embed)
        emb = emb if hasattr(emb, "table") else emb.wte
        w = emb.table()
    return norm, head, jnp.asarray(value(w))


def unembed(model: Model, resid: jax.Array) -> jax.Array:
    """Logits ``[..., d_vocab]`` of residual vectors ``[..., d_model]``: final norm, then unembedding."""
    norm, _, w = parts(model)
    return norm(resid) @ w.T


def norm_scale(model: Model, resid: jax.Array) -> tuple[jax.Array, bool, jax.Array]:
    """``(s, centred, weight)`` of the final norm at ``resid`` ``[..., d_model]`` (RMSNorm or LayerNorm)."""
    norm, _, _ = parts(model)
    w = jnp.asarray(value(norm.weight))
    centred = hasattr(norm, "bias") and norm.bias is not None
    x = resid - resid.mean(-1, keepdims=True) if centred else resid
    return jnp.sqrt(jnp.mean(x * x, axis=-1, keepdims=True) + norm.eps), centred, w
