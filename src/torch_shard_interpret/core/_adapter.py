# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""The site description: where the canonical sites of one architecture live (the ``Adapter`` record).

An adapter holds no weights and no forward logic. It is a declarative record read by
``build_sites`` (``_build.py``), which turns it into ``Site`` objects on a concrete module. The records
of known architectures, and the lookup that picks one, live in ``torch_shard_interpret.adapters``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn

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
    # relative: the query/key/value projections (their outputs are attn.q/k/v, before any rotary embedding)
    q: str | None = None
    k: str | None = None
    v: str | None = None
    qkv: str | None = None  # relative: one fused projection whose output is q | k | v along the last dim
    pos_embed: str | None = None  # absolute: module whose output is the learned position embedding
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
