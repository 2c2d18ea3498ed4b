"""Greedy generation with a KV cache in the reference decoders, with interventions at every step (steering).

The prompt runs once (prefill) and each new token runs alone against the preallocated cache; the step is
compiled once (the offset is traced). Interventions apply in the prefill and at every step; positions are
absolute, so ``positions=-1`` steers each newly generated token, and ``positions=None`` every position.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from ._errors import ModelError
from ._model import wrap
from ._run import run


def steering_vector(model: Any, positive: Any, negative: Any, site: str) -> Any:
    """Mean over positions of ``site`` on ``positive`` minus on ``negative`` (one prompt each or a batch)."""
    model = wrap(model)
    means = [run(model, p, cache=site)[1][site].mean(axis=(0, 1)) for p in (positive, negative)]
    return means[0] - means[1]


def generate(
    model: Any, prompt: Any, max_new_tokens: int = 20, interventions: dict[str, Any] | None = None
) -> np.ndarray:
    """Token ids ``[batch, prompt + max_new_tokens]`` (greedy), steered by ``interventions``."""
    from .models import init_kv

    model = wrap(model)
    cfg = getattr(model.module, "config", None)
    if cfg is None or not hasattr(cfg, "n_kv_heads"):
        raise ModelError("generate with a KV cache needs a jsi reference decoder (jsi.models / jsi.load)")
    ids = (
        jnp.asarray(model.tokenize(prompt))
        if isinstance(prompt, str)
        else jnp.atleast_2d(jnp.asarray(prompt))
    )
    b, t = ids.shape
    kv = init_kv(cfg, b, t + max_new_tokens)
    (logits, kv), _ = run(model, ids, interventions=interventions, kwargs={"kv": kv, "offset": 0})
    out = [np.asarray(ids)]
    tok = jnp.argmax(logits[:, -1], axis=-1)
    for s in range(max_new_tokens):
        out.append(np.asarray(tok)[:, None])
        if s == max_new_tokens - 1:
            break
        off = jnp.asarray(t + s, jnp.int32)
        (logits, kv), _ = run(
            model, tok[:, None], interventions=interventions, kwargs={"kv": kv, "offset": off}, offset=off
        )
        tok = jnp.argmax(logits[:, -1], axis=-1)
    return np.concatenate(out, axis=1)
