"""Activation patching, batched: many patched runs share one forward pass.

The patched run of every cell (site x position, site x head, or site x position x head with
``heads="grid"``; ``_cells.py`` says which rows, positions and heads a cell writes) starts from the same input, so ``k`` cells
run as one forward of ``k`` copies of that input, and batch row ``r`` gets only cell ``r``'s patch: one
``tsi.Fn`` per site writes the source activation into the rows (and positions, and heads) that patch
that site. The result equals one forward per patch, to float tolerance (``tests/patching``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..core._errors import TsiError
from ..core._result import logits_of
from ..core._site import PATTERN, Site
from ._cells import GRID, head_columns, head_mode, row_patches, same_cell, writable_sites
from ._common import (
    Metric,
    PatchingError,
    call_metric,
    check_head_sites,
    check_pair,
    chunks,
    last_logits_kwargs,
    position_labels,
    progress_chunks,
    rows_per_batch,
)
from ._prefix import base_kv, prefix_run, start_of
from ._result import PatchResult

if TYPE_CHECKING:
    from ..core._model import Model

DIRECTIONS = ("denoise", "noise")


def activation_patching(
    model: Model,
    clean: Any,
    corrupt: Any,
    metric: Metric,
    sites: str | Sequence[str] = "blocks.*.resid_pre",
    positions: str | int | Sequence[int | Sequence[int]] | None = "each",
    heads: bool | str = False,
    direction: str = "denoise",
    batch_size: int | None = None,
    memory_budget: int | str | None = None,
    progress: bool = True,
    normalize: bool = True,
    share_prefix: bool | None = None,
    reuse_kv: bool | None = None,
) -> PatchResult:
    """Patch one activation at a time and measure ``metric`` on each patched run.

    ``metric(logits) -> Tensor[batch]``: one value per batch row, e.g. ``logits[:, -1, mary] -
    logits[:, -1, john]``; it is called on batches of patched runs. ``direction="denoise"`` runs the
    corrupt prompt and patches in clean activations; ``"noise"`` runs the clean prompt and patches in
    corrupt ones. ``positions``: ``"each"`` (one column per position), ``"all"`` (one column patching
    every position), or a list whose items are positions or lists of positions patched together.
    ``heads=True`` (sites with a head dimension: ``attn.q``, ``k``, ``v``, ``z``, ``scores``, ``pattern``): one
    column per head, each patched at all positions (or at the positions given as a list); effects
    ``[n_sites, n_heads]``. ``heads="grid"``: one cell per position column and head, effects
    ``[n_sites, n_positions, n_heads]`` (TransformerLens's "by position" head patching), in the same batches.
    Under grouped-query attention a head of ``attn.k`` / ``attn.v`` is a key/value head: its column patches
    every query head of the group alike (``PatchResult.head_groups``). ``attn.pattern`` (eager attention) is
    patched through ``attn.scores``, its softmax input, which gives exactly the source pattern (``_cells.py``).

    Cells run ``batch_size`` at a time in one forward (default: as many as ``memory_budget`` bytes allow,
    1 GiB by default). Returns a ``PatchResult`` whose ``effects`` are normalised as
    ``(patched - baseline) / (target - baseline)`` (see ``PatchResult``; ``normalize=False`` keeps
    ``effects == raw``).

    ``share_prefix`` (default: on where it works): cells patched in block ``L`` only differ from the
    unpatched run from block ``L`` on, so a batch starts as one row and grows at each block's input by
    the rows patched in that block (copies of the unpatched row); the blocks before a cell's block run
    once for all of them. It applies to ``blocks.N.*`` sites of Hugging Face models; the first batch is
    checked against a plain one-row patched run, and any failure falls back to fixed batches.

    ``reuse_kv`` (default: on where it works, causal decoders with a dynamic KV cache): a patch from position
    ``p`` on cannot change the positions before ``p``, so the cells patched from ``p`` run only the tokens
    from ``p`` on, over the unpatched run's keys and values cropped to ``p`` (``_prefix.py``). The first such
    batch is checked against a plain patched run; a failure falls back to the batches above.
    """
    mode = head_mode(heads)
    clean_ids, corrupt_ids, site_objs, labels = _prepare(model, clean, corrupt, sites, bool(mode), direction)
    site_objs = writable_sites(model, site_objs)  # attn.pattern -> attn.scores
    names = [s.name for s in site_objs]
    clean_run = model.run(clean_ids, cache=names)
    corrupt_run = model.run(corrupt_ids, cache=names)
    clean_logits = logits_of(clean_run, "activation patching")  # [1, pos, d_vocab]
    clean_m = float(call_metric(metric, clean_logits, 1)[0])
    corrupt_m = float(call_metric(metric, logits_of(corrupt_run, "activation patching"), 1)[0])
    base_ids, source = (corrupt_ids, clean_run) if direction == "denoise" else (clean_ids, corrupt_run)
    baseline, target = (corrupt_m, clean_m) if direction == "denoise" else (clean_m, corrupt_m)
    scale = _scale(normalize, baseline, target)

    for site in site_objs:
        _check_layout(site, source.cache[site.name], bool(mode), pattern=True)
    col_heads: list[list[int]] | None = None
    head_ids, kv_groups = None, None
    if mode is None:
        col_pos, _ = columns(positions, clean_ids.shape[1], False, None)
        shape: tuple[int, ...] = (len(col_pos),)
    else:
        if mode == GRID and (positions is None or isinstance(positions, str) and positions == "all"):
            raise PatchingError(
                "heads='grid' gives one cell per position and head, so positions cannot be 'all'; use "
                "positions='each' (or a list), or heads=True to patch each head at all positions"
            )
        pos_groups, _ = columns(positions, clean_ids.shape[1], mode != GRID, 1)  # heads=True: one group
        col_pos, col_heads, head_ids, kv_groups = head_columns(
            site_objs, [source.cache[n] for n in names], pos_groups, mode
        )
        shape = (len(pos_groups), len(head_ids)) if mode == GRID else (len(head_ids),)
    base = corrupt_run if direction == "denoise" else clean_run
    # A cell whose source value equals the value it replaces (a shared prefix, an unchanged token at the
    # embedding) cannot change the run: its effect is exactly 0 and it needs no forward.
    cells = [
        (i, j)
        for i in range(len(site_objs))
        for j in range(len(col_pos))
        if not same_cell(
            site_objs[i],
            source.cache[names[i]],
            base.cache[names[i]],
            col_pos[j],
            col_heads[j] if col_heads is not None else None,
        )
    ]
    k = rows_per_batch(model, base_ids, clean_logits, batch_size, memory_budget)
    blocks = _block_of(model, site_objs) if share_prefix is not False else None
    if blocks is not None:  # deepest cells last, so that late chunks skip most of the model
        cells.sort(key=lambda c, depth=blocks: depth[c[0]])  # depth=: the narrowed list, for pyright

    kv = None
    if reuse_kv is not False and blocks is not None and mode != "heads" and cells:
        kv = base_kv(model, base_ids)
    keep = last_logits_kwargs(model, metric, clean_run.logits) if kv is not None else {}
    batches: list[tuple[int, list[tuple[int, int]]]] = []
    if kv is not None and blocks is not None:  # by first patched position, then by block
        cells.sort(key=lambda c, depth=blocks: (start_of(col_pos[c[1]]), depth[c[0]]))
        groups: dict[int, list[tuple[int, int]]] = {}
        for c in cells:
            groups.setdefault(start_of(col_pos[c[1]]), []).append(c)
        for start, group in groups.items():
            batches.extend((start, [group[c] for c in part]) for part in chunks(len(group), k))
    else:
        batches = [(0, [cells[c] for c in part]) for part in chunks(len(cells), k)]

    raw = torch.zeros(
        len(site_objs), len(col_pos)
    )  # [n_sites, n_columns]; the grid's columns: (position, head)
    checked = checked_kv = False

    def agreed(block: Any, values: torch.Tensor) -> torch.Tensor | None:
        """``values``, or None when a fast path's last row disagrees with an ordinary patched run."""
        last = _agrees(
            model, base_ids, block[-1:], site_objs, source.cache, col_pos, col_heads, metric, values[-1:]
        )
        return values if last else None

    for start, block in progress_chunks(batches, len(batches), "activation patching", progress):
        values = None
        if kv is not None and blocks is not None and start > 0:
            values = prefix_run(
                model,
                base_ids,
                block,
                blocks,
                site_objs,
                source.cache,
                col_pos,
                col_heads,
                metric,
                kv,
                start,
                keep,
            )
            if values is not None and not checked_kv:
                checked_kv = True
                values = agreed(block, values)
            if values is None:
                kv = None  # this model does not run on a reused prefix: use the batches below
        if values is None and blocks is not None:
            values = _grown_run(
                model, base_ids, block, blocks, site_objs, source.cache, col_pos, col_heads, metric
            )
            if values is not None and not checked:
                checked = True
                values = agreed(block, values)
            if values is None:
                blocks = None  # this model does not take a batch that grows mid-forward: use fixed batches
        if values is None:
            values = _fixed_run(model, base_ids, block, site_objs, source.cache, col_pos, col_heads, metric)
        for (i, j), v in zip(block, (values - baseline).tolist(), strict=True):
            raw[i, j] = v
    raw = raw.view(len(site_objs), *shape)
    return PatchResult(
        effects=raw / scale,
        raw=raw,
        sites=labels,
        positions=col_pos[:: len(head_ids)] if mode == GRID and head_ids else col_pos,
        str_tokens=position_labels(model, clean_ids),
        corrupt_str_tokens=position_labels(model, corrupt_ids),
        clean_metric=clean_m,
        corrupt_metric=corrupt_m,
        direction=direction,
        method="activation",
        heads=head_ids,
        head_groups=kv_groups,
        info={
            "forwards": 2 + len(batches) + (kv is not None),
            "batch_size": k,
            "cells_run": len(cells),
            "shared_prefix": blocks is not None,
            "reused_kv": kv is not None,
        },
    )


# ---- pieces shared with path and attribution patching ----------------------------------------------------------------
def _prepare(
    model: Model, clean: Any, corrupt: Any, sites: str | Sequence[str], heads: bool, direction: str
) -> tuple[torch.Tensor, torch.Tensor, list[Site], list[str]]:
    """Check the arguments of activation and attribution patching: (clean ids, corrupt ids, sites, names)."""
    if direction not in DIRECTIONS:
        raise PatchingError(f"direction must be 'denoise' or 'noise', not {direction!r}")
    clean_ids, corrupt_ids = check_pair(model, clean, corrupt)
    site_objs = model.resolve(sites)
    if not site_objs:
        raise PatchingError(f"sites={sites!r} selects no site of this model")
    if heads:
        check_head_sites(site_objs, "sites")
    return clean_ids, corrupt_ids, site_objs, [s.name for s in site_objs]


def _columns(
    positions: Any, ids: torch.Tensor, first: torch.Tensor, heads: bool
) -> tuple[list[list[int]], list[int] | None]:
    """``columns`` for prompts ``ids`` [1, pos]; ``first``: the cached value of the first site (head count)."""
    return columns(positions, ids.shape[1], heads, first.shape[2] if heads else None)


def _scale(normalize: bool, baseline: float, target: float) -> float:
    if not normalize:
        return 1.0
    gap = target - baseline
    if abs(gap) <= 1e-6 * max(1.0, abs(target), abs(baseline)):
        raise PatchingError(
            f"the clean and corrupt prompts give the same metric ({target:.6g}), so the normalised effect is "
            "undefined; choose prompts that differ on the metric, or pass normalize=False for raw changes"
        )
    return gap


def columns(
    positions: Any, n_pos: int, heads: bool, n_heads: int | None
) -> tuple[list[list[int]], list[int] | None]:
    """The positions each column patches, and (head mode) each column's head."""

    def norm(p: Any) -> int:
        if isinstance(p, bool) or not isinstance(p, int):
            raise PatchingError(f"positions must hold ints (or lists of ints), not {p!r}")
        if not -n_pos <= p < n_pos:
            raise PatchingError(
                f"position {p} is out of range: the prompts have {n_pos} tokens (0..{n_pos - 1})"
            )
        return p % n_pos

    every = list(range(n_pos))
    if positions is None or (isinstance(positions, str) and positions in ("all", "each")):
        if heads or positions in (None, "all"):
            groups = [every]
        else:
            groups = [[p] for p in every]
    elif isinstance(positions, str):
        raise PatchingError(f"positions={positions!r} is unknown; use 'each', 'all' or a list of positions")
    elif isinstance(positions, int):
        groups = [[norm(positions)]]
    else:
        items = list(positions.tolist() if torch.is_tensor(positions) else positions)
        if not items:
            raise PatchingError("positions is empty; give at least one position")
        groups = [[norm(q) for q in p] if isinstance(p, (list, tuple)) else [norm(p)] for p in items]
        if any(not g for g in groups):
            raise PatchingError("positions holds an empty group; each group needs at least one position")
        if heads:  # every head column patches all the given positions together
            groups = [sorted({p for g in groups for p in g})]
    if heads:
        assert n_heads is not None
        return [groups[0]] * n_heads, list(range(n_heads))
    widths = {len(g) for g in groups}
    if len(widths) > 1:
        raise PatchingError("position groups must all have the same size (e.g. [[1, 3], [2, 4]])")
    return groups, None


def _check_layout(site: Site, value: torch.Tensor, heads: bool, pattern: bool = False) -> None:
    """``pattern``: also accept ``[batch, n_heads, q_pos, k_pos]`` sites (activation patching writes them)."""
    swap = pattern and site.layout == PATTERN
    pos, head = (2, 1) if swap else (1, 2)
    if site.dim("batch", value.ndim) != 0 or site.dim("pos", value.ndim) != pos:
        raise PatchingError(
            f"{site.name} has no [batch, pos, ...] layout (shape {list(value.shape)}), so it cannot be patched per "
            "position; patch residual, attention or MLP sites (blocks.N.resid_pre, attn.z, mlp.out...)"
        )
    if heads and site.dim("n_heads", value.ndim) != head:
        raise PatchingError(f"heads=True needs a [batch, pos, n_heads, d_head] site, not {site.name!r}")


def _fixed_run(model, base_ids, block, sites, source, col_pos, col_heads, metric) -> torch.Tensor:
    """``len(block)`` copies of the base input, row ``r`` patched at cell ``block[r]``: metric per row."""
    ivs = row_patches(block, sites, source, col_pos, col_heads)
    out = model.run(repeat_rows(base_ids, len(block)), interventions=ivs, **no_kv_cache(model))
    return call_metric(metric, out.logits, len(block))


def _block_of(model: Model, sites: list[Site]) -> list[int] | None:
    """The block index of every site (``blocks.N.*``), when batches can grow at block inputs; else None."""
    from ..core._inputs import is_hf

    if model.adapter is None or not is_hf(model.module):
        return None
    out = []
    for site in sites:
        match = re.match(r"blocks\.(\d+)\.", site.name)
        if match is None:
            return None
        out.append(int(match[1]))
    return out


def _grown_run(
    model, base_ids, block, blocks, sites, source, col_pos, col_heads, metric
) -> torch.Tensor | None:
    """One forward that starts as the unpatched row and, at the input of each block ``L``, appends a copy of
    that row for every cell of ``block`` patched in ``L`` (cells sorted by block). Returns the metric of the
    appended rows, or None when the model cannot run this way."""
    counts: dict[int, int] = {}
    for i, _ in block:
        counts[blocks[i]] = counts.get(blocks[i], 0) + 1
    handles = []
    shifted = [(i, j) for i, j in block]
    ivs = row_patches([(-1, -1), *shifted], sites, source, col_pos, col_heads, skip_first=True)
    try:
        for layer, n in counts.items():
            entry = model.site(f"blocks.{layer}.resid_pre")
            handles.append(
                entry.module.register_forward_pre_hook(_grow(entry, n), with_kwargs=True, prepend=True)
            )
        out = model.run(base_ids, interventions=ivs, **no_kv_cache(model))
    except TsiError:
        raise
    except Exception:  # noqa: BLE001 - a model whose other inputs do not broadcast over a grown batch
        return None
    finally:
        for h in handles:
            h.remove()
    if out.logits is None or out.logits.shape[0] != len(block) + 1:
        return None
    return call_metric(metric, out.logits, len(block) + 1)[1:]


def _grow(entry: Site, n: int):
    def hook(module, args, kwargs):
        hidden = entry.get((args, kwargs))  # [rows so far, pos, d_model]
        grown = torch.cat([hidden, hidden[:1].expand(n, *hidden.shape[1:])], dim=0)
        return entry.put((args, kwargs), grown)

    return hook


def _agrees(model, base_ids, cell, sites, source, col_pos, col_heads, metric, got) -> bool:
    want = _fixed_run(model, base_ids, cell, sites, source, col_pos, col_heads, metric)
    return bool(torch.allclose(got, want, atol=1e-3, rtol=1e-3))


def no_kv_cache(model: Model) -> dict[str, Any]:
    """``use_cache=False`` for Hugging Face models: a patched run needs no KV cache."""
    from ..core._inputs import is_hf

    return {"use_cache": False} if is_hf(model.module) else {}


def repeat_rows(ids: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` copies of a batch-1 input along the batch dimension."""
    return ids.expand(k, *ids.shape[1:]).contiguous()
