"""Path patching (Wang et al. 2022, "Interpretability in the Wild", section 3.1 and appendix B)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..core._interventions import Fn
from ..core._result import logits_of
from ..core._site import Site
from ._activation import _scale, no_kv_cache, repeat_rows
from ._common import (
    Metric,
    PatchingError,
    call_metric,
    check_head_sites,
    check_pair,
    chunks,
    position_labels,
    progress_chunks,
    rows_per_batch,
)
from ._result import PatchResult

if TYPE_CHECKING:
    from ..core._model import Model


def path_patching(
    model: Model,
    clean: Any,
    corrupt: Any,
    metric: Metric,
    senders: str | Sequence[str] = "blocks.*.attn.z",
    receivers: str | Sequence[str] | None = None,
    heads: bool = True,
    receiver_heads: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    freeze_mlps: bool = True,
    batch_size: int | None = None,
    memory_budget: int | str | None = None,
    progress: bool = True,
    normalize: bool = True,
) -> PatchResult:
    """The effect of each sender on ``metric`` through the receivers only (the direct sender -> receiver path).

    For each sender (each head of each ``senders`` site with ``heads=True``, else each whole site):

    1. Run the **clean** prompt with the sender's activation replaced by its **corrupt** value, and every
       other attention head (``blocks.*.attn.z``) and, with ``freeze_mlps=True``, every MLP output
       (``blocks.*.mlp.out``) frozen to its clean value. Record the value each receiver site computes in
       this run (before any freezing of that site): for a receiver head, the output it computes from the
       changed residual stream, which equals patching its queries, keys and values together.
    2. Run the **clean** prompt again with only the receivers set to the values recorded in step 1
       (``receiver_heads``: only those heads of ``attn.z`` receivers; a list applies to every such
       receiver, a dict gives heads per receiver site); everything downstream of the receivers is
       recomputed. Measure ``metric``.

    ``receivers`` defaults to the residual stream after the last block, which makes the result the
    sender's direct effect on the logits. Receivers earlier than a sender are unaffected by it. Returns a
    ``PatchResult`` (``method="path"``, ``direction="noise"``): ``effects[sender_site, head]``
    ``= (patched - clean_metric) / (corrupt_metric - clean_metric)``; ``raw`` is ``patched - clean_metric``.
    Senders run batched, one row per sender, two forwards per batch.
    """
    clean_ids, corrupt_ids = check_pair(model, clean, corrupt)
    send_sites = model.resolve(senders)
    if not send_sites:
        raise PatchingError(f"senders={senders!r} selects no site of this model")
    if heads:
        check_head_sites(send_sites, "senders")
    if receivers is None:
        if not model.cfg.n_layers:
            raise PatchingError("this model has no named blocks; give receivers= explicitly")
        receivers = f"blocks.{model.cfg.n_layers - 1}.resid_post"
    recv_sites = model.resolve(receivers)
    if not recv_sites:
        raise PatchingError(f"receivers={receivers!r} selects no site of this model")
    recv_heads = _receiver_heads(recv_sites, receiver_heads)
    freeze = model.resolve("blocks.*.attn.z") + (model.resolve("blocks.*.mlp.out") if freeze_mlps else [])
    every = list(dict.fromkeys([*freeze, *send_sites, *recv_sites]))
    names = [s.name for s in every]

    clean_run = model.run(clean_ids, cache=names)
    corrupt_run = model.run(corrupt_ids, cache=[s.name for s in send_sites])
    clean_logits = logits_of(clean_run, "path patching")  # [1, pos, d_vocab]
    clean_m = float(call_metric(metric, clean_logits, 1)[0])
    corrupt_m = float(call_metric(metric, logits_of(corrupt_run, "path patching"), 1)[0])
    scale = _scale(normalize, clean_m, corrupt_m)

    n_heads = clean_run.cache[send_sites[0].name].shape[2] if heads else 1
    cells = [(i, h if heads else None) for i in range(len(send_sites)) for h in range(n_heads)]
    k = rows_per_batch(model, clean_ids, clean_logits, batch_size, memory_budget)
    frozen = {s.name for s in freeze}
    receiving = {s.name for s in recv_sites}
    raw = torch.empty(len(cells))
    parts = chunks(len(cells), k)
    for part in progress_chunks(parts, len(parts), "path patching", progress):
        block = [cells[c] for c in part]
        n = len(block)
        recorded: dict[str, torch.Tensor] = {}
        step1 = {}
        for site in every:
            rows = [(r, h) for r, (i, h) in enumerate(block) if send_sites[i] is site]
            src = corrupt_run.cache[site.name] if rows else None
            step1[site.name] = Fn(
                _step1(site.name, clean_run.cache[site.name], src, rows, site.name in frozen,
                       recorded if site.name in receiving else None)
            )  # fmt: skip
        model.run(repeat_rows(clean_ids, n), interventions=step1, return_logits=False, **no_kv_cache(model))
        step2 = {s.name: Fn(_step2(recorded[s.name], recv_heads.get(s.name))) for s in recv_sites}
        out = model.run(repeat_rows(clean_ids, n), interventions=step2, **no_kv_cache(model))
        raw[part.start : part.stop] = call_metric(metric, logits_of(out, "path patching"), n) - clean_m
    raw = raw.view(len(send_sites), n_heads)
    pos = list(range(clean_ids.shape[1]))
    return PatchResult(
        effects=raw / scale,
        raw=raw,
        sites=[s.name for s in send_sites],
        positions=[pos] * n_heads,
        str_tokens=position_labels(model, clean_ids),
        corrupt_str_tokens=position_labels(model, corrupt_ids),
        clean_metric=clean_m,
        corrupt_metric=corrupt_m,
        direction="noise",
        method="path",
        heads=list(range(n_heads)) if heads else None,
        info={
            "receivers": [s.name for s in recv_sites],
            "receiver_heads": {k: list(v) for k, v in recv_heads.items()},
            "freeze_mlps": freeze_mlps,
            "forwards": 2 + 2 * len(parts),
            "batch_size": k,
        },
    )


def _receiver_heads(sites: list[Site], spec: Any) -> dict[str, list[int]]:
    if spec is None:
        return {}
    head_sites = [s for s in sites if s.layout is not None and "n_heads" in s.layout]
    if isinstance(spec, Mapping):
        known = {s.name for s in head_sites}
        for name in spec:
            if name not in known:
                raise PatchingError(
                    f"receiver_heads names {name!r}, which is not an attn.z receiver; receivers with heads are "
                    f"{sorted(known) or 'none'}"
                )
        return {k: [int(h) for h in v] for k, v in spec.items()}
    if not head_sites:
        raise PatchingError("receiver_heads needs receivers with a head dimension (blocks.N.attn.z)")
    check_head_sites(head_sites, "receivers")
    return {s.name: [int(h) for h in spec] for s in head_sites}


def _step1(
    name: str, clean: torch.Tensor, corrupt: torch.Tensor | None, rows: list, freeze: bool, record: Any
):
    """Record the computed value (receivers), freeze it to the clean value, then put the senders' corrupt
    values into their own rows."""
    row_idx = torch.tensor([r for r, _ in rows], dtype=torch.long)
    head_idx = [h for _, h in rows]

    def fn(value: torch.Tensor, ctx: Any) -> torch.Tensor | None:
        if record is not None:
            record[name] = value.detach().clone()
        if not freeze and corrupt is None:
            return None
        out = clean.to(value.device, value.dtype).expand_as(value).clone() if freeze else value.clone()
        if corrupt is not None:
            src = corrupt[0].to(value.device, value.dtype)
            if head_idx[0] is None:
                out[row_idx.to(value.device)] = src
            else:
                h = torch.tensor(head_idx, device=value.device)
                out[row_idx.to(value.device), :, h] = src[:, h].transpose(0, 1)  # [n, pos, d_head]
        return out

    return fn


def _step2(recorded: torch.Tensor, heads: list[int] | None):
    def fn(value: torch.Tensor, ctx: Any) -> torch.Tensor:
        new = recorded.to(value.device, value.dtype)
        if heads is None:
            return new
        out = value.clone()
        out[:, :, heads] = new[:, :, heads]
        return out

    return fn
