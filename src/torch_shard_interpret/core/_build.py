"""Build ``Site`` objects for a concrete module from its ``Adapter`` record."""

from __future__ import annotations

from torch import nn

from ._adapter import Adapter, find_module
from ._errors import AdapterError
from ._site import HEADS, PATTERN, RESID, Site


def build_sites(adapter: Adapter, root: nn.Module, n_heads: int | None) -> dict[str, Site]:
    """The canonical sites of ``root`` under ``adapter``, in forward order."""
    found = find_module(root, adapter.blocks)
    if found is None:
        raise AdapterError(
            f"adapter {adapter.name!r} expects the block list at {adapter.blocks!r}, which this model lacks"
        )
    blocks_path, blocks = found
    n_heads = n_heads or adapter.n_heads
    sites: dict[str, Site] = {}
    mlp_post_layout, mlp_out_layout = (
        (("tokens", "d_mlp"), ("tokens", "d_model"))
        if adapter.mlp_flat
        else (("batch", "pos", "d_mlp"), RESID)
    )

    def add(name, path, module, kind, index=None, layout=RESID, **kw):
        sites[name] = Site(name, path, module, kind, index, layout, **kw)

    emb = find_module(root, adapter.embed)
    if emb is not None:
        add("embed", emb[0], emb[1], "output")
    for i, block in enumerate(blocks):
        pre = f"{blocks_path}.{i}"
        b = f"blocks.{i}"

        def rel(path: str | None, _block=block, _pre=pre):
            if path is None:
                return None
            try:
                return f"{_pre}.{path}", _block.get_submodule(path)
            except AttributeError:
                raise AdapterError(
                    f"adapter {adapter.name!r} expects {_pre}.{path}, which this model lacks; "
                    "pass adapter=None to tsi.wrap to use raw sites only"
                ) from None

        add(f"{b}.resid_pre", pre, block, "input", "hidden_states")
        attn = rel(adapter.attn)
        attn_out = rel(adapter.attn_out) if adapter.attn_out else attn
        o_proj = rel(adapter.o_proj)
        pat = rel(adapter.pattern) if adapter.pattern else attn
        add(f"{b}.attn.z", *o_proj, "input", None, HEADS, n_heads=n_heads)
        add(f"{b}.attn.pattern", *pat, "output", 1, PATTERN, writable=False, requires="eager")
        add(f"{b}.attn.out", *attn_out, "output", 0)
        if adapter.mlp_down:
            add(f"{b}.mlp.post", *rel(adapter.mlp_down), "input", None, mlp_post_layout)
        mlp_out = rel(adapter.mlp_out) if adapter.mlp_out else rel(adapter.mlp)
        add(f"{b}.mlp.out", *mlp_out, "output", 0, mlp_out_layout)
        add(f"{b}.resid_post", pre, block, "output", 0)
    if adapter.final_norm:
        fn = find_module(root, adapter.final_norm)
        if fn is not None:
            add("final_norm", fn[0], fn[1], "output")
    if adapter.unembed:
        un = find_module(root, adapter.unembed)
        if un is not None:
            add("logits", un[0], un[1], "output", layout=("batch", "pos", "d_vocab"))
    return sites


def block_modules(adapter: Adapter, root: nn.Module, i: int) -> dict[str, nn.Module | None]:
    """The modules of block ``i`` by role (block, attn, o_proj, mlp, mlp_down, ln1, ln2)."""
    found = find_module(root, adapter.blocks)
    if found is None:
        raise AdapterError(f"adapter {adapter.name!r} expects the block list at {adapter.blocks!r}")
    block = found[1][i]

    def get(path):
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
