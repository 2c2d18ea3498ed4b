"""Read activations of many texts at chosen positions: one forward per batch, many sites at once.

Shared by steering vectors (contrast means) and probes (features). Batches are right-padded by the
tokenizer, so the attention mask says which positions are real; ``position=-1`` is each row's last real
token and ``"mean"`` averages over its real tokens only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

from .._progress import track
from ..core._errors import InputError

if TYPE_CHECKING:
    from ..core._model import Model

Position = int | str
"""What callers may pass: a token position (negative counts from the end) or ``"mean"``; see check_position."""
CheckedPosition = int | Literal["mean"]


def as_texts(texts: Any, what: str) -> list[str]:
    """A list of non-blank strings (one string becomes a list of one)."""
    if isinstance(texts, str):
        texts = [texts]
    try:
        items = list(texts)
    except TypeError:
        raise InputError(
            f"{what} must be a string or a list of strings, not {type(texts).__name__}"
        ) from None
    if not items:
        raise InputError(f"{what} is empty; give at least one text")
    for i, t in enumerate(items):
        if not isinstance(t, str) or not t.strip():
            raise InputError(f"{what}[{i}] is {t!r}; every item must be a non-blank string")
    return items


def check_position(position: Position) -> CheckedPosition:
    if position == "mean" or (isinstance(position, int) and not isinstance(position, bool)):
        return position
    raise InputError(f"position must be an integer (e.g. -1, the last token) or 'mean', not {position!r}")


def select(acts: torch.Tensor, mask: torch.Tensor, position: CheckedPosition, site: str) -> torch.Tensor:
    """``[batch, pos, *rest]`` activations -> ``[batch, *rest]`` at ``position`` of each row's real tokens."""
    mask = mask.to(acts.device).bool()  # [batch, pos]
    if position == "mean":
        w = mask.to(acts.dtype).view(*mask.shape, *([1] * (acts.ndim - 2)))
        return (acts * w).sum(1) / w.sum(1).clamp_min(1)
    n_real = mask.sum(1)  # [batch]
    first = mask.to(torch.int64).argmax(1)  # first real position (left or right padding)
    rows = []
    for b in range(acts.shape[0]):
        n = int(n_real[b])
        p = position if position >= 0 else n + position
        if not 0 <= p < n:
            raise InputError(
                f"position {position} is out of range at {site} for a text of {n} tokens; "
                f"use a position between {-n} and {n - 1}, or 'mean'"
            )
        rows.append(acts[b, int(first[b]) + p])
    return torch.stack(rows)


def collect(
    model: Model,
    texts: Sequence[str],
    sites: str | Sequence[str],
    position: Position = -1,
    batch_size: int = 16,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """``{site: [n_texts, d]}`` float32 CPU activations at ``position``, every site cached in one run per batch."""
    texts = as_texts(texts, "texts")
    position = check_position(position)
    names = [s.name for s in model.resolve(sites)]
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, not {batch_size}")
    out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    starts = range(0, len(texts), batch_size)
    bar = _bar(starts, progress, "harvest")
    for start in bar:
        chunk = texts[start : start + batch_size]
        run = model.run(chunk, cache=names, return_logits=False)
        mask = run.attention_mask
        for n in names:
            acts = run.cache[n]  # [batch, pos, ...]
            m = mask if mask is not None else torch.ones(acts.shape[:2], dtype=torch.bool)
            out[n].append(select(acts.detach().float(), m, position, n).cpu())
    return {n: torch.cat(v) for n, v in out.items()}


def _bar(items: Any, enabled: bool, desc: str) -> Any:
    return track(items, desc=desc, unit="batch", enabled=enabled)
