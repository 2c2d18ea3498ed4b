"""Caches across ranks: DTensor entries made full, data-parallel caches gathered on one rank."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from ..core._cache import ActivationCache
from ..core._dtensor import is_dtensor
from ._group import DistributedError, collective, is_initialized, lost_rank_error, rank, world_size

if TYPE_CHECKING:
    from ..core._model import Model

Gather = str | None


def full_cache(cache: Mapping[str, torch.Tensor]) -> ActivationCache:
    """The cache with every DTensor entry replaced by its full tensor (a collective: call it on every rank).

    Caches from ``Model.run`` already hold full tensors; this is for tensors cached by other means."""
    out: dict[str, torch.Tensor] = {}
    with collective("full_cache"):
        for name, value in cache.items():
            out[name] = value.full_tensor() if is_dtensor(value) else value
    return ActivationCache(out)


def _cat(parts: list[dict[str, torch.Tensor]], dim: int) -> ActivationCache:
    names = list(parts[0])
    for r, part in enumerate(parts):
        if list(part) != names:
            raise DistributedError(
                f"gather_cache: rank {r} cached sites {sorted(part)} but rank 0 cached {sorted(names)}; "
                "every rank must cache the same sites"
            )
    out = {}
    for name in names:
        try:
            out[name] = torch.cat([p[name] for p in parts], dim=dim)
        except RuntimeError:
            shapes = [list(p[name].shape) for p in parts]
            raise DistributedError(
                f"gather_cache: {name} has shapes {shapes} on ranks 0..{len(parts) - 1}, which do not join "
                f"along dimension {dim}; give every rank prompts of the same length (pad them, or use store "
                "harvesting with a fixed context)"
            ) from None
    return ActivationCache(out)


def gather_cache(
    cache: Mapping[str, torch.Tensor], dst: int | None = 0, dim: int = 0
) -> ActivationCache | None:
    """Join the caches of every rank along ``dim`` (the batch), in rank order.

    For data-parallel runs, where each rank ran different rows. A collective: call it on every rank.
    Returns the joined cache on rank ``dst`` and None on the others (``dst=None``: on every rank). Values
    travel as CPU tensors and come back on CPU. Without a process group it returns the cache itself."""
    local = {k: v.detach().cpu() for k, v in full_cache(cache).items()}
    if not is_initialized() or world_size() == 1:
        return ActivationCache(local)
    parts: list[Any] = [None] * world_size()
    with collective("gather_cache"):
        if dst is None:
            dist.all_gather_object(parts, local)
        else:
            dist.gather_object(local, parts if rank() == dst else None, dst=dst)
    if dst is not None and rank() != dst:
        return None
    return _cat(parts, dim)


def run(model: Model, inputs: Any = None, *, gather: Gather = "rank0", **kwargs: Any) -> Any:
    """``model.run(inputs, **kwargs)`` on every rank, then join the rows of every rank.

    ``gather="rank0"``: on rank 0, ``result.cache``, ``result.grads``, ``result.logits``, ``result.tokens``
    and ``result.attention_mask`` hold every rank's rows in rank order (on CPU); the other ranks keep their
    own. ``gather="all"``: on every rank. ``gather=None``: nothing is joined. Under tensor parallelism every
    rank already holds the same full result: use ``gather=None``. A failure of another rank while running
    or gathering raises ``DistributedError`` instead of hanging."""
    if gather not in ("rank0", "all", None):
        raise DistributedError(f"gather={gather!r} is unknown; use 'rank0', 'all' or None")
    try:
        result = model.run(inputs, **kwargs)
    except (dist.DistError, RuntimeError) as exc:
        if not _is_comm_error(exc):
            raise
        raise lost_rank_error("the forward pass", exc) from exc
    if gather is None or not is_initialized() or world_size() == 1:
        return result
    fields = ("logits", "tokens", "attention_mask")
    mine = {f"cache/{k}": v for k, v in result.cache.items()}
    mine.update({f"grads/{k}": v for k, v in result.grads.items()})
    mine.update({f: getattr(result, f) for f in fields if torch.is_tensor(getattr(result, f))})
    joined = gather_cache(mine, dst=0 if gather == "rank0" else None)
    if joined is None:  # not the destination rank
        return result
    result.cache = ActivationCache({k[6:]: v for k, v in joined.items() if k.startswith("cache/")})
    result.grads = {k[6:]: v for k, v in joined.items() if k.startswith("grads/")}
    for f in fields:
        setattr(result, f, joined[f] if f in joined else None)
    return result


_COMM_WORDS: tuple[str, ...] = ("gloo", "nccl", "connection", "timed out", "timeout", "peer", "socket")


def _is_comm_error(exc: BaseException) -> bool:
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return any(word in text for word in _COMM_WORDS)
