"""Activation patching that reuses the unpatched run's keys and values before the patched position.

In a causal decoder a patch at position ``p`` cannot change anything at positions before ``p``: every
block's keys and values there are those of the unpatched run. So the cells patched from position ``p`` on
run only the tokens ``p..n-1``, on top of the unpatched run's KV cache cropped to ``p`` (one forward per
group of cells sharing ``p``), and, as in ``_grown_run``, the batch starts as the unpatched row and grows
at each block's input by the rows patched in that block, so the blocks before a cell's block run once for
all of them. Each block's cached prefix is repeated to the rows that block sees. The logits before ``p``
are the unpatched run's, so the metric sees the full sequence as in the loop.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import torch

from ..core._errors import TsiError
from ._common import call_metric

if TYPE_CHECKING:
    from ..core._model import Model
    from ..core._site import Site


def base_kv(
    model: Model, base_ids: torch.Tensor
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor] | None:
    """The unpatched run's per-block ``(keys, values)`` and logits, or None when the model is not a causal
    decoder with a plain (non-sliding) dynamic KV cache."""
    cfg = getattr(model.module, "config", None)
    if (
        cfg is None
        or getattr(cfg, "is_encoder_decoder", False)
        or base_ids.ndim != 2
        or base_ids.shape[0] != 1
    ):
        return None
    if (
        getattr(cfg, "sliding_window", None)
        or getattr(cfg, "layer_types", None)
        and any(t != "full_attention" for t in cfg.layer_types)
    ):
        return None
    try:
        out = model.run(base_ids, use_cache=True)
    except TsiError:
        raise
    except Exception:  # noqa: BLE001 - a model that takes no use_cache
        return None
    # ``cache`` first: transformers 5 names it so and warns when ``past_key_values`` is read
    cache = getattr(out.output, "cache", None) or getattr(out.output, "past_key_values", None)
    layers = getattr(cache, "layers", None)
    if cache is None or not layers or out.logits is None:
        return None
    kv = []
    for layer in layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if type(layer).__name__ != "DynamicLayer" or not torch.is_tensor(keys) or not torch.is_tensor(values):
            return None
        kv.append((keys, values))
    return kv, out.logits


def start_of(col: list[int]) -> int:
    """The first position a column patches: everything before it is the unpatched run's."""
    return min(col)


def prefix_run(
    model: Model,
    base_ids: torch.Tensor,
    block: list[tuple[int, int]],
    blocks: list[int],
    sites: list[Site],
    source: Any,
    col_pos: list[list[int]],
    col_heads: list[list[int]] | None,
    metric: Any,
    kv: tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor],
    start: int,
    keep: dict[str, Any] | None = None,
) -> torch.Tensor | None:
    """The metric of each cell of ``block`` (all patched from position ``start`` on, sorted by block), from
    one forward of the tokens ``start..n-1`` on the reused prefix; None when the model cannot run this way.
    ``keep``: ``{"logits_to_keep": 1}`` when the metric reads the last position only (``last_logits_kwargs``)."""
    from transformers import DynamicCache

    from ._activation import _grow
    from ._cells import row_patches

    layers, logits = kv
    counts: dict[int, int] = {}
    for i, _ in block:
        counts[blocks[i]] = counts.get(blocks[i], 0) + 1
    present, rows = [], 1
    for layer in range(len(layers)):
        rows += counts.get(layer, 0)
        present.append(rows)
    data = [
        (k[:, :, :start].expand(n, -1, -1, -1), v[:, :, :start].expand(n, -1, -1, -1))
        for (k, v), n in zip(layers, present, strict=True)
    ]
    ivs = row_patches([(-1, -1), *block], sites, source, col_pos, col_heads, skip_first=True, offset=start)
    handles = []
    try:
        cache = DynamicCache(data)
        for layer, n in counts.items():
            entry = model.site(f"blocks.{layer}.resid_pre")
            handles.append(
                entry.module.register_forward_pre_hook(_grow(entry, n), with_kwargs=True, prepend=True)
            )
        # A dict input: the model's ``cache=`` keyword (transformers 5) is not ``run``'s ``cache=``.
        inputs = {
            "input_ids": base_ids[:, start:],
            _cache_kwarg(model): cache,
            "use_cache": True,
            **(keep or {}),
        }
        out = model.run(inputs, interventions=ivs)
    except TsiError:
        raise
    except Exception:  # noqa: BLE001 - a model whose cache or inputs do not take a grown batch
        return None
    finally:
        for h in handles:
            h.remove()
    n = len(block) + 1
    if out.logits is None or out.logits.shape[0] != n:
        return None
    if keep and out.logits.shape[1] == 1:
        return call_metric(metric, out.logits, n)[1:]
    if out.logits.shape[1] != base_ids.shape[1] - start:
        return None
    full = torch.cat([logits[:, :start].expand(n, -1, -1), out.logits], dim=1) if start else out.logits
    return call_metric(metric, full, n)[1:]


def _cache_kwarg(model: Model) -> str:
    """``cache`` where the model's forward takes it (transformers 5), else ``past_key_values``."""
    try:
        params = inspect.signature(model.module.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"
