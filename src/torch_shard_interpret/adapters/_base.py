"""Adapters name things: they map canonical site names to module paths of one architecture.

An adapter holds no weights and no forward logic. It is a declarative record read by
``build_sites``, which turns it into ``Site`` objects on a concrete module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from ..core._errors import AdapterError
from ..core._site import HEADS, PATTERN, RESID, Site

BlockStyle = Literal["sequential", "parallel", "post_norm"]


@dataclass(frozen=True)
class Adapter:
    """Where the canonical sites of one architecture live.

    Absolute paths are from the root module (a ``*ForCausalLM``); each is also tried without its first
    component, so the same adapter fits the bare base model. Block-relative paths are from one block.
    """

    name: str
    model_types: tuple[str, ...]
    embed: str  # absolute: module whose output is `embed`
    blocks: str  # absolute: the ModuleList of blocks
    attn: str  # relative: the attention module (its output[0] is attn.out unless attn_out is set)
    o_proj: str  # relative: attention output projection; its input is attn.z
    # relative: MLP down projection; its input is mlp.post (None: no module sees it, e.g. fused MoE experts)
    mlp_down: str | None
    mlp: str | None = "mlp"  # relative: the MLP module (its output is mlp.out unless mlp_out is set)
    attn_out: str | None = None  # relative: what attention writes to the residual, when not attn (post-norms)
    mlp_out: str | None = None  # relative: what the MLP writes to the residual, when not mlp
    pattern: str | None = None  # relative: module whose output[1] is the attention pattern (default attn)
    ln1: str | None = None  # relative: norm before attention
    ln2: str | None = None  # relative: norm before the MLP
    final_norm: str | None = None  # absolute
    unembed: str | None = None  # absolute
    block_style: BlockStyle = "sequential"
    # The MLP sees tokens flattened to [batch*pos, ...] (OPT), so mlp.post/mlp.out have no batch/pos dims.
    mlp_flat: bool = False
    # Heads per block, for models without a Hugging Face config (the generic adapter finds it on the module).
    n_heads: int | None = None
    # HF config attribute names for ModelConfig fields, first one present wins.
    config: dict[str, tuple[str, ...]] = field(default_factory=dict)


DEFAULT_CONFIG: dict[str, tuple[str, ...]] = {
    "n_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "d_model": ("hidden_size", "n_embd", "d_model"),
    "n_heads": ("num_attention_heads", "n_head", "num_heads"),
    "n_kv_heads": ("num_key_value_heads", "num_kv_heads"),
    "d_head": ("head_dim",),
    "d_mlp": ("intermediate_size", "n_inner", "ffn_dim", "d_ff"),
    "d_vocab": ("vocab_size",),
    "n_ctx": ("max_position_embeddings", "n_positions", "n_ctx"),
}


def find_module(root: nn.Module, path: str) -> tuple[str, nn.Module] | None:
    """``root.get_submodule(path)``, also trying ``path`` without its first component."""
    candidates = [path]
    if "." in path:
        candidates.append(path.split(".", 1)[1])
    for cand in candidates:
        try:
            return cand, root.get_submodule(cand)
        except AttributeError:
            continue
    return None


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
