# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""Build ``Site`` objects for a concrete module from its ``Adapter`` record."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from torch import nn

from ._adapter import Adapter, find_module
from ._errors import AdapterError
from ._site import HEADS, PATTERN, RESID, Kind, Site
from ._views import HeadSlice, norm_scale

SCALE = ("batch", "pos", "one")


def build_sites(
    adapter: Adapter,
    root: nn.Module,
    n_heads: int | None,
    n_kv_heads: int | None = None,
    d_head: int | None = None,
) -> dict[str, Site]:
    """The canonical sites of ``root`` under ``adapter``, in forward order."""
    found = find_module(root, adapter.blocks)
    if found is None:
        raise AdapterError(
            f"adapter {adapter.name!r} expects the block list at {adapter.blocks!r}, which this model lacks"
        )
    blocks_path, blocks = found
    n_heads = n_heads or adapter.n_heads
    sites: dict[str, Site] = {}
    flat = adapter.mlp_flat
    mlp_post_layout = ("tokens", "d_mlp") if flat else ("batch", "pos", "d_mlp")
    mlp_out_layout = ("tokens", "d_model") if flat else RESID

    def add(
        name: str,
        path: str,
        module: nn.Module,
        kind: Kind,
        index: int | str | None = None,
        layout: tuple[str, ...] = RESID,
        **kw: Any,
    ) -> None:
        sites[name] = Site(name, path, module, kind, index, layout, **kw)

    def add_scale(name: str, found: tuple[str, nn.Module] | None, layout: tuple[str, ...] = SCALE) -> None:
        view = norm_scale(found[1]) if found is not None else None
        if found is not None and view is not None:
            add(
                name,
                *found,
                "input",
                None,
                layout,
                view=view,
                writable=False,
                read_only_reason="a norm scale is a statistic of the norm's input; change that input instead",
            )

    for name, path in (("embed", adapter.embed), ("pos_embed", adapter.pos_embed)):
        emb = find_module(root, path) if path else None
        if emb is not None:
            add(name, emb[0], emb[1], "output")
    for i, block in enumerate(cast("Iterable[nn.Module]", blocks)):
        pre = f"{blocks_path}.{i}"
        b = f"blocks.{i}"

        def rel(path: str, _block: nn.Module = block, _pre: str = pre) -> tuple[str, nn.Module]:
            try:
                return f"{_pre}.{path}", _block.get_submodule(path)
            except AttributeError:
                raise AdapterError(
                    f"adapter {adapter.name!r} expects {_pre}.{path}, which this model lacks; "
                    "pass adapter=None to tsi.wrap to use raw sites only"
                ) from None

        add(f"{b}.resid_pre", pre, block, "input", "hidden_states")
        if adapter.ln1:
            add_scale(f"{b}.ln1.scale", rel(adapter.ln1))
        attn = rel(adapter.attn)
        pat = rel(adapter.pattern) if adapter.pattern else attn
        for part, (where, view) in _qkv_views(adapter, n_heads, n_kv_heads, d_head).items():
            heads = n_heads if view is None else None
            add(f"{b}.attn.{part}", *rel(where), "output", 0, HEADS, n_heads=heads, view=view)
        add(f"{b}.attn.scores", *pat, "scores", None, PATTERN, requires="eager")
        add(f"{b}.attn.pattern", *pat, "output", 1, PATTERN, writable=False, requires="eager")
        add(f"{b}.attn.z", *rel(adapter.o_proj), "input", None, HEADS, n_heads=n_heads)
        add(f"{b}.attn.out", *(rel(adapter.attn_out) if adapter.attn_out else attn), "output", 0)
        if adapter.ln2 and adapter.block_style == "sequential":
            ln2 = rel(adapter.ln2)
            # The norm's input tensor is also the residual the block adds the MLP to: writes go in place.
            add(f"{b}.resid_mid", *ln2, "input", None, mlp_out_layout, extra={"in_place": True})
        if adapter.ln2:
            # OPT flattens the tokens before its pre-MLP norm; its post-norm variant restores the shape first
            flat_ln2 = flat and adapter.block_style != "post_norm"
            add_scale(f"{b}.ln2.scale", rel(adapter.ln2), ("tokens", "one") if flat_ln2 else SCALE)
        if adapter.mlp_down:
            add(f"{b}.mlp.post", *rel(adapter.mlp_down), "input", None, mlp_post_layout)
        mlp_out = rel(adapter.mlp_out) if adapter.mlp_out else rel(adapter.mlp or "")
        add(f"{b}.mlp.out", *mlp_out, "output", 0, mlp_out_layout)
        add(f"{b}.resid_post", pre, block, "output", 0)
    if adapter.final_norm:
        fn = find_module(root, adapter.final_norm)
        if fn is not None:
            add_scale("final_norm.scale", fn)
            add("final_norm", fn[0], fn[1], "output")
    if adapter.unembed:
        un = find_module(root, adapter.unembed)
        if un is not None:
            add("logits", un[0], un[1], "output", layout=("batch", "pos", "d_vocab"))
    return sites


def _qkv_views(
    adapter: Adapter, n_heads: int | None, n_kv_heads: int | None, d_head: int | None
) -> dict[str, tuple[str, HeadSlice | None]]:
    """``{"q"|"k"|"v": (module path, view)}``; view None: the module's whole output split into n_heads."""
    if not n_heads:
        return {}
    n_kv = n_kv_heads or n_heads
    group = n_heads // n_kv if n_heads % n_kv == 0 else 1
    if adapter.qkv:
        if not d_head:
            return {}
        q_w, kv_w = n_heads * d_head, n_kv * d_head
        bounds = {
            "q": (0, q_w, n_heads, 1),
            "k": (q_w, q_w + kv_w, n_kv, group),
            "v": (q_w + kv_w, q_w + 2 * kv_w, n_kv, group),
        }
        return {p: (adapter.qkv, HeadSlice(a, z, h, g, f"attn.{p}")) for p, (a, z, h, g) in bounds.items()}
    out: dict[str, tuple[str, HeadSlice | None]] = {}
    for part, path in (("q", adapter.q), ("k", adapter.k), ("v", adapter.v)):
        if path is None:
            continue
        shared = part != "q" and n_kv != n_heads
        out[part] = (path, HeadSlice(None, None, n_kv, group, f"attn.{part}") if shared else None)
    return out


def block_modules(adapter: Adapter, root: nn.Module, i: int) -> dict[str, nn.Module | None]:
    """The modules of block ``i`` by role (block, attn, o_proj, mlp, mlp_down, ln1, ln2)."""
    found = find_module(root, adapter.blocks)
    if found is None:
        raise AdapterError(f"adapter {adapter.name!r} expects the block list at {adapter.blocks!r}")
    block = list(cast("Iterable[nn.Module]", found[1]))[i]

    def get(path: str | None) -> nn.Module | None:
        return None if path is None else block.get_submodule(path)

    return {
        "block": block,
        "attn": get(adapter.attn),
        "o_proj": get(adapter.o_proj),
        "mlp": get(adapter.mlp),
        "mlp_down": get(adapter.mlp_down),
        "ln1": get(adapter.ln1),
        "ln2": get(adapter.ln2),
        "attn_out": get(adapter.attn_out or adapter.attn),
        "mlp_out": get(adapter.mlp_out or adapter.mlp),
    }
