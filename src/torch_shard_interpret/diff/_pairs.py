"""Paired activations of two models on the same inputs: the rows both models saw, site by site."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ..core._errors import TsiError
from ..core._model import Model


class DiffError(TsiError, ValueError):
    """Two models (or stores) that cannot be compared: different sites, shapes, or no data."""


def common_sites(model_a: Model, model_b: Model, sites: str | Sequence[str]) -> list[str]:
    names = [s.name for s in model_a.resolve(sites)]
    b = set(model_b.sites())
    missing = [n for n in names if n not in b]
    if missing:
        raise DiffError(f"model B has no site {missing[0]!r}; compare models of the same architecture")
    return names


def _count(data: Any) -> int:
    if isinstance(data, str):
        return 1
    try:
        n = len(data)
    except TypeError:
        raise DiffError(
            f"data must be a list of texts or a tensor of inputs, not {type(data).__name__}"
        ) from None
    if n == 0:
        raise DiffError("no data was given; pass at least one text or input row")
    return n


def paired_batches(
    model_a: Model, model_b: Model, data: Any, sites: Sequence[str], batch_size: int, stop_early: bool = True
) -> Iterator[tuple[Any, Any, torch.Tensor | None]]:
    """Yield ``(run_a, run_b, mask)`` per batch; both models see the same prepared inputs."""
    n = _count(data)
    items = [data] if isinstance(data, str) else data
    for start in range(0, n, batch_size):
        part = items[start : start + batch_size]
        part = list(part) if isinstance(part, tuple) else part
        ra = model_a.run(part, cache=list(sites), return_logits=not stop_early)
        ids = ra.tokens if ra.tokens is not None else part
        kw: dict[str, Any] = {"attention_mask": ra.attention_mask} if ra.attention_mask is not None else {}
        rb = model_b.run(ids, cache=list(sites), return_logits=not stop_early, **kw)
        yield ra, rb, ra.attention_mask


def rows(act: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``[n_rows, d]`` float32 CPU: sequence sites keep their real tokens, others flatten per input."""
    act = act.detach().float()
    if act.ndim >= 3 and mask is not None:
        return act.flatten(2)[mask.to(act.device).bool()].cpu()
    if act.ndim >= 3 and act.shape[1] > 1 and mask is None and act.ndim == 3:
        return act.reshape(-1, act.shape[-1]).cpu()
    return act.flatten(1).cpu()
