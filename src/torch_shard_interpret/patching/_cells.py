"""Which batch rows, positions and heads each patching cell writes, for every site layout.

A cell is (site, column). A column patches a group of positions and, in head mode, a group of heads.
Sites come in two layouts: ``[batch, pos, n_heads, d_head]`` (``attn.q/k/v/z``, residual sites without the
head dimension) and ``[batch, n_heads, q_pos, k_pos]`` (``attn.scores``; positions are query positions).

Heads are the site's own head dimension: query heads. Under grouped-query attention ``attn.k`` and
``attn.v`` show each key/value head once per query head that reads it, and the copies of one group must
stay equal, so a head column of those sites is one key/value head and patches every query head of its
group alike (``head_groups``).

``attn.pattern`` is read-only (the model has already used it when it is returned); it is patched through
``attn.scores``, its softmax input: the pattern is ``softmax(scores)`` over the same causal mask, so writing
the source run's scores at a head and query position gives exactly the source run's pattern there.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core._interventions import Fn
from ..core._site import PATTERN, Site
from ._common import PatchingError

GRID = "grid"


def head_mode(heads: Any) -> str | None:
    """``None`` (no heads), ``"heads"`` (``heads=True``) or ``"grid"`` (``heads="grid"``); else a clear error."""
    if heads is False or heads is None:
        return None
    if heads is True:
        return "heads"
    if heads == GRID:
        return GRID
    raise PatchingError(
        f"heads must be False, True (one column per head, all positions together) or 'grid' (one cell per "
        f"position and head, effects [n_sites, n_positions, n_heads]), not {heads!r}"
    )


def writable_sites(model: Any, sites: list[Site]) -> list[Site]:
    """``sites`` with every ``attn.pattern`` replaced by the ``attn.scores`` site of the same block."""
    out = []
    for site in sites:
        if site.name.endswith(".attn.pattern"):
            name = site.name[: -len("pattern")] + "scores"
            if name not in model.sites():
                raise PatchingError(
                    f"{site.name} is patched through {name} (its softmax input), which this model's adapter "
                    "does not name; patch attn.z instead"
                )
            site = model.site(name)
        out.append(site)
    return out


def swapped(site: Site) -> bool:
    """True for ``[batch, n_heads, q_pos, k_pos]`` sites, whose head axis comes before the position axis."""
    return site.layout == PATTERN


def head_groups(site: Site, n_heads: int) -> list[list[int]]:
    """The query heads each head column of ``site`` patches: one per head, or one key/value group."""
    group = getattr(site.view, "group", 1) or 1
    if group > 1:
        return [list(range(g * group, (g + 1) * group)) for g in range(n_heads // group)]
    return [[h] for h in range(n_heads)]


def head_columns(
    sites: list[Site], values: list[torch.Tensor], groups: list[list[int]], mode: str
) -> tuple[list[list[int]], list[list[int]], list[int], list[list[int]] | None]:
    """Head mode: ``groups`` are the position groups (``columns``). Returns the positions and the heads of
    every column, the head index of each head column, and the query heads per head column where a column
    holds more than one (grouped k/v), else None. All sites must have the same head columns."""
    per_site = []
    for site, value in zip(sites, values, strict=True):
        n = value.shape[1 if swapped(site) else 2]
        per_site.append(head_groups(site, n))
    first = per_site[0]
    for site, hg in zip(sites, per_site, strict=True):
        if hg != first:
            raise PatchingError(
                f"{sites[0].name} has {len(first)} head columns but {site.name} has {len(hg)} (grouped-query "
                "attention: attn.k and attn.v have one column per key/value head, attn.q, z and pattern one per "
                "query head); patch them in separate calls"
            )
    if mode == GRID:
        col_pos = [g for g in groups for _ in first]
        col_heads = [h for _ in groups for h in first]
    else:
        every = sorted({p for g in groups for p in g})
        col_pos, col_heads = [every] * len(first), list(first)
    grouped = first if any(len(h) > 1 for h in first) else None
    return col_pos, col_heads, list(range(len(first))), grouped


def same_cell(
    site: Site, src: torch.Tensor, base: torch.Tensor, pos: list[int], heads: list[int] | None
) -> bool:
    """Whether the source value equals the value it replaces at this cell (so the cell cannot change the run)."""
    a, b = src[0], base[0]  # [pos, ...] or [n_heads, q_pos, k_pos]
    if swapped(site):
        a, b = a.transpose(0, 1), b.transpose(0, 1)  # [q_pos, n_heads, k_pos]
    a, b = a[pos], b[pos]
    if heads is not None:
        a, b = a[:, heads], b[:, heads]
    return torch.equal(a, b)


def row_patches(
    block: list[tuple[int, int]],
    sites: list[Site],
    source: Any,
    col_pos: list[list[int]],
    col_heads: list[list[int]] | None,
    skip_first: bool = False,
    offset: int = 0,
) -> dict[str, Fn]:
    """One ``tsi.Fn`` per site: batch row ``r`` takes the source value at cell ``block[r]`` (``skip_first``:
    row 0 is left unpatched; ``offset``: the run starts at that position, after a reused KV prefix)."""
    by_site: dict[int, list[tuple[int, int]]] = {}
    for row, (i, j) in enumerate(block):
        if skip_first and row == 0:
            continue
        by_site.setdefault(i, []).append((row, j))
    out = {}
    for i, rows in by_site.items():
        src = source[sites[i].name]  # [1, pos, ...] or [1, n_heads, q_pos, k_pos]
        r = torch.tensor([row for row, _ in rows])
        p = torch.tensor([col_pos[j] for _, j in rows])  # [n, m]
        h = torch.tensor([col_heads[j] for _, j in rows]) if col_heads is not None else None  # [n, g]
        out[sites[i].name] = Fn(_writer(src, r, p, h, offset, swapped(sites[i])))
    return out


def _writer(
    src: torch.Tensor,
    rows: torch.Tensor,
    pos: torch.Tensor,
    heads: torch.Tensor | None,
    offset: int = 0,
    swap: bool = False,
):
    moved: dict[Any, tuple[torch.Tensor, ...]] = {}

    def write(value: torch.Tensor, ctx: Any) -> torch.Tensor:
        key = (value.device, value.dtype)
        if key not in moved:
            dev = value.device
            s = src[0].to(dev, value.dtype)
            s = s.transpose(0, 1) if swap else s  # [pos, ...] (heads next, where there are heads)
            p = pos.to(dev)
            if heads is None:
                idx = (rows.to(dev)[:, None], p - offset, p)  # [n, 1], [n, m]
            else:  # [n, 1, 1], [n, m, 1], [n, 1, g]: every position of a column with every head of it
                h = heads.to(dev)[:, None, :]
                idx = (rows.to(dev)[:, None, None], (p - offset)[:, :, None], p[:, :, None], h)
            moved[key] = (s, *idx)
        s, r, q, p, *h = moved[key]  # q: the positions in this run, p: in the source
        out = value.clone()
        view = out.transpose(1, 2) if swap else out  # [batch, pos, ...]: writes land in ``out``
        if h:
            view[r, q, h[0]] = s[p, h[0]]  # [n, m, g, ...]
        else:
            view[r, q] = s[p]  # [n, m, ...]
        return out

    return write
