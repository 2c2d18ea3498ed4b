"""Logit lens and direct logit attribution (the same definitions and result fields as ``tsi``).

``logit_lens`` applies the final norm and the unembedding to ``blocks.{i}.resid_post`` of every block.
``direct_logit_attribution`` freezes the final norm's scale ``s`` at its value on the full residual: a
component ``c`` then contributes ``norm(c) @ W_U[:, t]`` with ``norm(c) = (c - mean(c)) / s * w``
(no mean for RMSNorm), so ``sum(components) + remainder == total`` and the remainder holds only the
final norm's bias (LayerNorm) and rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import InputError
from ._model import Model, wrap
from ._readout import norm_scale, parts, submodule, unembed, value
from ._run import run


@dataclass
class LensResult:
    probs: np.ndarray
    """``[n_layers, pos, d_vocab]``."""
    tokens: np.ndarray
    str_tokens: list[str]
    positions: list[int]
    target: int | None = None
    layer_names: list[str] = field(default_factory=list)

    def prob(self, token: int | None = None, position: int = -1) -> np.ndarray:
        t = self.target if token is None else token
        return self.probs[:, position, t]

    def rank(self, token: int | None = None, position: int = -1) -> np.ndarray:
        """``[n_layers]`` rank of ``token`` (0 = top) at ``position``."""
        t = self.target if token is None else token
        p = self.probs[:, position]
        return (p > p[:, t : t + 1]).sum(-1)

    def to_dict(self) -> dict[str, Any]:
        return {"layer_names": self.layer_names, "positions": self.positions, "str_tokens": self.str_tokens,
                "target": self.target, "top": self.probs.argmax(-1).tolist()}  # fmt: skip


def _ids(model: Model, prompt: Any) -> jax.Array:
    ids = jnp.asarray(model.tokenize(prompt)) if isinstance(prompt, str) else jnp.asarray(prompt)
    if ids.ndim == 1:
        ids = ids[None]
    if ids.shape[0] != 1:
        raise InputError(f"this technique takes one prompt, not a batch of {ids.shape[0]}")
    return ids


def _tid(model: Model, token: Any) -> int | None:
    return None if token is None else model.token_id(token)


def logit_lens(model: Any, prompt: Any, *, target: int | str | None = None) -> LensResult:
    model = wrap(model)
    ids = _ids(model, prompt)
    _, cache = run(model, ids, cache="blocks.*.resid_post")
    names = cache.names("blocks.*.resid_post")
    resid = jnp.stack([cache[n][0] for n in names])  # [L, pos, d]
    probs = np.asarray(jax.nn.softmax(unembed(model, resid), axis=-1))
    toks = np.asarray(ids[0])
    return LensResult(probs, toks, model.str_tokens(toks), list(range(len(toks))), _tid(model, target), names)


@dataclass
class DLAResult:
    total: float
    components: dict[str, float]
    remainder: float
    heads: np.ndarray
    """``[n_layers, n_heads]``."""
    head_bias: np.ndarray
    target: int
    baseline: int | None = None
    position: int = -1
    scale: float = float("nan")

    def top_components(self, k: int = 5) -> list[tuple[str, float]]:
        return sorted(self.components.items(), key=lambda kv: -abs(kv[1]))[:k]

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "components": self.components, "remainder": self.remainder,
                "heads": self.heads.tolist(), "head_bias": self.head_bias.tolist(), "target": self.target,
                "baseline": self.baseline, "position": self.position, "scale": self.scale}  # fmt: skip


def direct_logit_attribution(
    model: Any,
    prompt: Any,
    target: int | str | None = None,
    baseline: int | str | None = None,
    *,
    position: int = -1,
) -> DLAResult:
    model = wrap(model)
    ids = _ids(model, prompt)
    n = model.cfg.n_layers
    sites = [
        "embed",
        "blocks.*.attn.out",
        "blocks.*.mlp.out",
        "blocks.*.attn.z",
        f"blocks.{n - 1}.resid_post",
    ]
    logits, cache = run(model, ids, cache=sites)
    t = _tid(model, target)
    t = int(logits[0, position].argmax()) if t is None else t
    b = _tid(model, baseline)
    _, _, w_u = parts(model)
    direction = w_u[t] - (w_u[b] if b is not None else 0.0)
    resid = cache[f"blocks.{n - 1}.resid_post"][0, position]
    s, centred, w = norm_scale(model, resid)

    def contrib(c: jax.Array) -> float:
        c = c - c.mean(-1, keepdims=True) if centred else c
        return float((c / s * w) @ direction)

    comps = {"embed": contrib(cache["embed"][0, position])}
    heads, head_bias = np.zeros((n, model.cfg.n_heads)), np.zeros(n)
    for i in range(n):
        comps[f"blocks.{i}.attn"] = contrib(cache[f"blocks.{i}.attn.out"][0, position])
        comps[f"blocks.{i}.mlp"] = contrib(cache[f"blocks.{i}.mlp.out"][0, position])
        o = submodule(model.module, f"{model.adapter.blocks}.{i}.{model.adapter.o_proj}")
        w_o = value(o.weight)
        z = cache[f"blocks.{i}.attn.z"][0, position]  # [H, d_head]
        per_head = jnp.einsum("hd,mhd->hm", z, w_o.reshape(w_o.shape[0], z.shape[0], z.shape[1]))
        heads[i] = [contrib(v) for v in per_head]
        bias = getattr(o, "bias", None)
        if bias is not None:
            head_bias[i] = contrib(value(bias))
    total = float(logits[0, position, t] - (logits[0, position, b] if b is not None else 0.0))
    return DLAResult(total, comps, total - sum(comps.values()), heads, head_bias, t, b, position, float(s[0]))
