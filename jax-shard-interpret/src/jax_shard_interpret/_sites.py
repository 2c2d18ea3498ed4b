"""Site names: the canonical vocabulary shared with torch-shard-interpret, globs and the layout of each site.

Canonical names (the same strings as ``tsi``): ``embed``, ``blocks.{i}.resid_pre``, ``blocks.{i}.resid_post``,
``blocks.{i}.attn.out``, ``blocks.{i}.mlp.out``, ``blocks.{i}.attn.z`` ``[batch, pos, n_heads, d_head]``,
``blocks.{i}.attn.pattern`` ``[batch, n_heads, q_pos, k_pos]``, ``blocks.{i}.mlp.post``, ``final_norm`` and
``logits``. Raw names are a module path and a side: ``"layers.3.mlp:output"``, ``"layers.3.mlp:input"``,
``":output"`` for the root module. This module is framework-free (no jax, no torch).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

from ._errors import SiteNotFoundError

BLOCK_SITES = (
    "resid_pre",
    "attn.z",
    "attn.pattern",
    "attn.out",
    "resid_mid",
    "mlp.post",
    "mlp.out",
    "resid_post",
)
"""Per-block canonical suffixes, in the order they run (``resid_mid`` only where the block computes one)."""
GLOBAL_SITES = ("embed", "final_norm", "logits")


def canonical_names(n_layers: int) -> list[str]:
    """Every canonical site of a decoder with ``n_layers`` blocks, in forward order."""
    names = ["embed"]
    for i in range(n_layers):
        names += [f"blocks.{i}.{s}" for s in BLOCK_SITES if s != "resid_mid"]
    return [*names, "final_norm", "logits"]


def natural_key(name: str) -> list[object]:
    """Sort key that puts ``blocks.2`` before ``blocks.10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def dims(name: str) -> dict[str, int]:
    """Axis of ``batch``, ``pos`` and ``heads`` in the value of site ``name`` (raw sites: batch 0, pos 1)."""
    if name.endswith("attn.z"):
        return {"batch": 0, "pos": 1, "heads": 2}
    if name.endswith("attn.pattern") or name.endswith(".pattern:output"):
        return {"batch": 0, "heads": 1, "pos": 2}
    return {"batch": 0, "pos": 1}


def block_of(name: str) -> int | None:
    m = re.match(r"blocks\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def select(patterns: str | Iterable[str] | None, known: Sequence[str]) -> list[str]:
    """The sites among ``known`` that ``patterns`` (a name, a glob, or a list of them) name, in order.

    Raises ``SiteNotFoundError`` for a pattern that matches nothing."""
    if patterns is None:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    out: list[str] = []
    seen: set[str] = set()
    known_set = set(known)
    for pat in patterns:
        if not isinstance(pat, str):
            raise SiteNotFoundError(repr(pat), known, hint="site names are strings")
        hits = [pat] if pat in known_set else [k for k in known if fnmatch.fnmatchcase(k, pat)]
        if not hits:
            raise SiteNotFoundError(pat, known)
        for h in hits:
            if h not in seen:
                seen.add(h)
                out.append(h)
    return out
