# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""Views: a site whose value is a function of what a module really sees (a slice, a regrouping, a statistic).

``get(raw)`` turns the module's tensor into the site's value; ``put(raw, value)`` gives the module's tensor
with the site's part replaced (a view without ``put`` is read-only). Views read and write the user's own
activations; they never recompute the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._errors import InterventionError


@dataclass(frozen=True)
class HeadSlice:
    """Features ``start:stop`` of the last dimension (a fused q|k|v projection), shown per head.

    ``group > 1`` (grouped-query attention) shows each key/value head once per query head that reads it:
    query head ``h`` reads key/value head ``h // group``. Writes must keep the copies of one group equal.
    """

    start: int | None
    stop: int | None
    n_heads: int  # heads in the raw tensor (key/value heads under GQA)
    group: int = 1
    name: str = ""

    def get(self, raw: torch.Tensor) -> torch.Tensor:
        part = raw[..., self.start : self.stop].unflatten(-1, (self.n_heads, -1))
        return part.repeat_interleave(self.group, dim=-2) if self.group > 1 else part

    def put(self, raw: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        if self.group > 1:
            grouped = value.unflatten(-2, (self.n_heads, self.group))  # [..., n_kv, group, d_head]
            first = grouped[..., :1, :]
            if not torch.equal(grouped, first.expand_as(grouped)):
                raise InterventionError(
                    f"{self.name}: query heads that share a key/value head (grouped-query attention, "
                    f"{self.group} per group) got different values; change all heads of a group alike, "
                    "or change blocks.N.attn.q"
                )
            value = first.squeeze(-2)
        flat = value.flatten(-2).to(raw.dtype)
        if self.start is None and self.stop is None:
            return flat
        width = raw.shape[-1]
        start = self.start or 0
        stop = width if self.stop is None else self.stop
        return torch.cat([raw[..., :start], flat, raw[..., stop:]], dim=-1)


@dataclass(frozen=True)
class NormScale:
    """The divisor of a norm layer for each token, ``[..., 1]``: ``sqrt(var(x) + eps)`` (LayerNorm, centred)
    or ``sqrt(mean(x^2) + eps)`` (RMSNorm), from the norm's input ``x``, in float32 then ``x``'s dtype."""

    eps: float
    centred: bool
    put = None  # read-only

    def get(self, raw: torch.Tensor) -> torch.Tensor:
        x = raw.float()
        if self.centred:
            x = x - x.mean(-1, keepdim=True)
        return (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt().to(raw.dtype)


_EPS = ("eps", "variance_epsilon", "epsilon", "layer_norm_eps")


def norm_scale(module: nn.Module) -> NormScale | None:
    """The scale view of a norm module (by its ``eps`` and whether its class is an RMSNorm), else None."""
    eps = next((getattr(module, a) for a in _EPS if isinstance(getattr(module, a, None), float)), None)
    if eps is None:
        return None
    return NormScale(eps, centred="rms" not in type(module).__name__.lower())
