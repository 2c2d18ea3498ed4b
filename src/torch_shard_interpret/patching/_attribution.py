"""Attribution patching: a first-order estimate of every activation patch from two forwards and one backward.

For denoising, the effect of patching activation ``a`` from its corrupt value to its clean value is
estimated by ``(a_clean - a_corrupt) . d metric / d a`` with the gradient taken on the corrupt run
(Nanda 2023, "Attribution Patching: Activation Patching At Industrial Scale"). The estimate is good for
small components (head outputs) and can be poor for big ones (the whole residual stream at a position);
check it against ``activation_patching`` on a few prompts (``PatchResult.correlation``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..core._result import logits_of
from ._activation import _check_layout, _columns, _prepare, _scale
from ._cells import head_columns
from ._common import (
    Metric,
    PatchingError,
    call_metric,
    call_metric_grad,
    last_logits_kwargs,
    position_labels,
)
from ._result import PatchResult

if TYPE_CHECKING:
    from ..core._model import Model


def attribution_patching(
    model: Model,
    clean: Any,
    corrupt: Any,
    metric: Metric,
    sites: str | Sequence[str] = "blocks.*.resid_pre",
    positions: str | int | Sequence[int | Sequence[int]] | None = "each",
    heads: bool = False,
    direction: str = "denoise",
    normalize: bool = True,
) -> PatchResult:
    """Estimate ``activation_patching`` (same arguments, same ``PatchResult`` and normalisation) with
    2 forwards + 1 backward: ``raw[site, column] = sum((source_act - base_act) * grad)`` over the column's
    positions and the feature dimension (``d_model``; ``d_head`` of the column's head with ``heads=True``; for
    ``attn.k`` / ``attn.v`` under grouped-query attention, of every query head's copy of the key/value head),
    where ``grad = d metric / d act`` on the run being patched (the corrupt run for denoising) and
    ``source_act`` comes from the other run."""
    if heads not in (True, False):
        raise PatchingError(
            f"attribution_patching takes heads=True or False, not {heads!r}; the per-position head grid "
            "(heads='grid') is activation_patching's"
        )
    clean_ids, corrupt_ids, site_objs, names = _prepare(model, clean, corrupt, sites, heads, direction)
    base_ids, src_ids = (corrupt_ids, clean_ids) if direction == "denoise" else (clean_ids, corrupt_ids)

    # Unembed the last position only when that is all the metric reads, in both forwards: decided on random
    # logits of the run's shape before any forward (on the source run's own logits where the vocabulary size
    # is unknown, so that only the second forward is spared).
    vocab = model.cfg.d_vocab
    probe = torch.randn(1, src_ids.shape[1], vocab, device=src_ids.device) if vocab else None
    keep = last_logits_kwargs(model, metric, probe)
    source = model.run(src_ids, cache=names, **keep)  # forward 1
    if probe is None:
        keep = last_logits_kwargs(model, metric, source.logits)
    held: dict[str, torch.Tensor] = {}

    def scalar(run: Any) -> torch.Tensor:
        value = call_metric_grad(metric, run.logits)
        held["metric"] = value.detach()
        return value

    base = model.run(base_ids, cache=names, grad=scalar, **keep)  # forward 2 + backward
    base_m = float(held["metric"])
    src_m = float(call_metric(metric, logits_of(source, "attribution patching"), 1)[0])
    clean_m, corrupt_m = (src_m, base_m) if direction == "denoise" else (base_m, src_m)
    scale = _scale(normalize, base_m, src_m)

    col_pos, col_heads = _columns(positions, clean_ids, source.cache[names[0]], heads)
    for site in site_objs:
        _check_layout(site, source.cache[site.name], heads)
    kv_groups = None
    if (
        heads
    ):  # one column per head, or per key/value head of grouped attn.k / attn.v (as activation patching)
        col_pos, groups, col_heads, kv_groups = head_columns(
            site_objs, [source.cache[n] for n in names], col_pos[:1], "heads"
        )
    raw = torch.empty(len(names), len(col_pos))
    for i, site in enumerate(site_objs):
        delta = source.cache[site.name][0].float() - base.cache[site.name][0].float()  # [pos, ...]
        contrib = (delta * base.grads[site.name][0].float()).cpu()  # [pos, ...]
        if heads:
            per = contrib.sum(-1)[col_pos[0]].sum(0)  # [n_heads]; a key/value head: the sum over its copies
            raw[i] = torch.stack([per[g].sum() for g in groups])
        else:
            per = contrib.flatten(1).sum(-1)  # [pos]
            raw[i] = torch.stack([per[g].sum() for g in col_pos])
    return PatchResult(
        effects=raw / scale,
        raw=raw,
        sites=names,
        positions=col_pos,
        str_tokens=position_labels(model, clean_ids),
        corrupt_str_tokens=position_labels(model, corrupt_ids),
        clean_metric=clean_m,
        corrupt_metric=corrupt_m,
        direction=direction,
        method="attribution",
        heads=col_heads if heads else None,
        head_groups=kv_groups,
        info={"forwards": 2, "backwards": 1, "last_logits_only": bool(keep)},
    )
