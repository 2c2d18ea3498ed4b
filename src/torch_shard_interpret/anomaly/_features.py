"""Features for detectors: one vector per input and site, from a model run or an activation store.

Sequence sites ``[batch, pos, ...]`` are reduced over positions (``reduce="mean"`` over the real tokens, or
``"last"``: the last real token); any other site (``[batch, ...]``, e.g. a CNN's ``[batch, C, H, W]``) is
flattened. The result is ``{site: [n_inputs, d]}`` float32 on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .._progress import progress as bar_of
from ..core._errors import TsiError
from ..core._model import Model

REDUCE = ("mean", "last")


class AnomalyError(TsiError, ValueError):
    """Bad input to a detector: an unknown name, too little data, a missing model or labels."""


def n_items(data: Any) -> int:
    if isinstance(data, str):
        return 1
    try:
        return len(data)
    except TypeError:
        raise AnomalyError(
            f"inputs must be a list of texts, a tensor or an activation store, not {type(data).__name__}"
        ) from None


def _chunk(data: Any, start: int, stop: int) -> Any:
    return data[start:stop] if not isinstance(data, str) else [data]


def _is_tokens(x: Any) -> bool:
    return isinstance(x, (list, tuple, str)) or (torch.is_tensor(x) and not x.is_floating_point())


def _reduce(act: torch.Tensor, mask: torch.Tensor | None, reduce: str, tokens: bool) -> torch.Tensor:
    act = act.detach().float()
    if not tokens or act.ndim < 3:
        return act.flatten(1).cpu()
    act = act.flatten(2)  # [batch, pos, d]
    if mask is None:
        mask = torch.ones(act.shape[:2], dtype=torch.bool, device=act.device)
    mask = mask.to(act.device).bool()
    if reduce == "last":
        pos = torch.arange(mask.shape[1], device=act.device).expand_as(mask)
        last = torch.where(mask, pos, -1).amax(1)  # [batch] index of the last real token
        return act[torch.arange(act.shape[0]), last].cpu()
    w = mask.float().unsqueeze(-1)
    return ((act * w).sum(1) / w.sum(1).clamp_min(1)).cpu()


def site_names(model: Model, sites: str | Sequence[str]) -> list[str]:
    return [s.name for s in model.resolve(sites)]


def extract(
    model: Model | None,
    data: Any,
    sites: Sequence[str],
    reduce: str = "mean",
    batch_size: int = 32,
    progress: bool = True,
    desc: str = "features",
) -> dict[str, torch.Tensor]:
    """``{site: [n, d]}`` for ``data`` (texts, token ids ``[n, pos]``, any input tensor, or a store)."""
    if reduce not in REDUCE:
        raise AnomalyError(f"unknown reduce {reduce!r}; choose one of {', '.join(REDUCE)}")
    if hasattr(data, "read") and hasattr(data, "context"):
        return from_store(data, sites, reduce, progress)
    if model is None:
        raise AnomalyError(
            "scoring raw inputs needs the model; pass model= (or bind one with det.bind(model))"
        )
    n = n_items(data)
    if n == 0:
        raise AnomalyError("no inputs were given; pass at least one text, row or image")
    out: dict[str, list[torch.Tensor]] = {s: [] for s in sites}
    tokens = _is_tokens(data)
    with bar_of(n, desc=desc, unit="input", enabled=progress) as bar:
        for start in range(0, n, batch_size):
            part = _chunk(data, start, start + batch_size)
            run = model.run(
                list(part) if isinstance(part, tuple) else part, cache=list(sites), return_logits=False
            )
            for s in sites:
                out[s].append(_reduce(run.cache[s], run.attention_mask, reduce, tokens))
            bar.update(min(batch_size, n - start))
    return {s: torch.cat(v) for s, v in out.items()}


def from_store(store: Any, sites: Sequence[str], reduce: str, progress: bool) -> dict[str, torch.Tensor]:
    """Reduce a store's rows sequence by sequence (its rows are ``context`` tokens per sequence), streaming."""
    missing = [s for s in sites if s not in store.sites]
    if missing:
        raise AnomalyError(
            f"the store holds {', '.join(store.sites)}, not {', '.join(missing)}; harvest those sites"
        )
    ctx, n = int(store.context), len(store)
    step = max(ctx, (65536 // ctx) * ctx)
    out: dict[str, list[torch.Tensor]] = {s: [] for s in sites}
    with bar_of(n, desc="store features", unit="row", enabled=progress) as bar:
        for start in range(0, n, step):
            stop = min(n, start + step)
            for s in sites:
                rows = store.read(s, start, stop).float()  # [rows, ...]
                seq = rows.reshape(-1, ctx, *rows.shape[1:])  # [n_seq, context, ...]
                out[s].append(_reduce(seq, None, reduce, True))
            bar.update(stop - start)
    return {s: torch.cat(v) for s, v in out.items()}
