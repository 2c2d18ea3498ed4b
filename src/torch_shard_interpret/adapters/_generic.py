"""The generic fallback: find the block list and the usual parts by structure and common names.

Works on any ``nn.Module`` (Hugging Face or not) laid out as embedding -> ``ModuleList`` of blocks ->
final norm -> unembedding, with an attention child and an MLP child in each block. It cannot see the
forward, so it assumes sequential pre-norm blocks unless the config says parallel
(``use_parallel_residual``/``parallel_attn``), or the block has Gemma-2-style post-norms. The attention
pattern site is the attention module's ``output[1]``, which exists only when the module returns
``(output, weights)`` as Hugging Face attention does.
"""

from __future__ import annotations

import re

from torch import nn

from ._base import Adapter

_ATTN = re.compile(r"attn|attention", re.IGNORECASE)
_MLP = re.compile(r"mlp|ffn|feed_?forward|ffw", re.IGNORECASE)
_ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention", "attn_layer")
_MLP_NAMES = ("mlp", "ffn", "feed_forward", "feedforward", "ff")
_O_PROJ = ("o_proj", "out_proj", "c_proj", "dense", "wo", "proj_out", "o")
_DOWN = ("down_proj", "c_proj", "fc2", "fc_out", "dense_4h_to_h", "w2", "wo", "proj_out", "out_proj")
_QKV = {"q": ("q_proj", "query", "q"), "k": ("k_proj", "key", "k"), "v": ("v_proj", "value", "v")}
_HEADS = ("num_heads", "n_heads", "n_head", "num_attention_heads", "heads")


def _linear_like(m: nn.Module) -> bool:
    if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D":
        return True
    w = getattr(m, "weight", None)
    return "Linear" in type(m).__name__ and getattr(w, "ndim", 0) == 2


def _is_norm(m: nn.Module) -> bool:
    return "norm" in type(m).__name__.lower()


def _find_child(block: nn.Module, names: tuple[str, ...], pattern: re.Pattern) -> str | None:
    children = dict(block.named_children())
    for name in names:
        if name in children and _has_linear(children[name]):
            return name
    for name, child in children.items():
        if pattern.search(name) and _has_linear(child):
            return name
    return None


def _has_linear(m: nn.Module) -> bool:
    return any(_linear_like(x) for x in m.modules())


def _find_proj(module: nn.Module, names: tuple[str, ...]) -> str | None:
    """Path (relative to ``module``) of the linear child named like ``names``, else of its last linear."""
    linears = [(p, m) for p, m in module.named_modules() if p and _linear_like(m)]
    for name in names:
        for path, _ in reversed(linears):
            if path.rsplit(".", 1)[-1] == name:
                return path
    return linears[-1][0] if linears else None


def _parts(block: nn.Module) -> dict | None:
    """The adapter's block-relative fields for one block, or None when attention or MLP is missing."""
    attn = _find_child(block, _ATTN_NAMES, _ATTN)
    if attn is None:
        return None
    o_proj = _find_proj(block.get_submodule(attn), _O_PROJ)
    if o_proj is None:
        return None
    parts: dict = {"attn": attn, "o_proj": f"{attn}.{o_proj}"}
    attn_children = dict(block.get_submodule(attn).named_children())
    for part, names in _QKV.items():
        found = next((n for n in names if _linear_like(attn_children.get(n, nn.Identity()))), None)
        if found is not None:
            parts[part] = f"{attn}.{found}"
    mlp = _find_child(block, _MLP_NAMES, _MLP)
    children = dict(block.named_children())
    if mlp is not None and mlp != attn:
        down = _find_proj(block.get_submodule(mlp), _DOWN)
        if down is None:
            return None
        parts.update(mlp=mlp, mlp_down=f"{mlp}.{down}")
    else:  # OPT-style: the MLP's linears sit on the block itself
        down = next(
            (n for n in ("fc2", "fc_out", "w2", "down_proj") if _linear_like(children.get(n, nn.Identity()))),
            None,
        )
        if down is None:
            return None
        parts.update(mlp=None, mlp_down=down, mlp_out=down)
    norms = [n for n, c in children.items() if _is_norm(c)]
    post_ff = next((n for n in norms if re.search(r"post_(feedforward|ffw|ffn|mlp)", n)), None)
    post_attn = next((n for n in norms if re.search(r"post_att", n)), None)
    if post_ff is not None and post_attn is not None:  # Gemma-2 / OLMo-2 post-norms
        parts.update(attn_out=post_attn, mlp_out=post_ff)
        pre_ff = next((n for n in norms if re.search(r"pre_(feedforward|ffw|ffn|mlp)", n)), None)
        parts["ln2"] = pre_ff
        norms = [n for n in norms if n not in (post_attn, post_ff, pre_ff)]
        parts["ln1"] = norms[0] if norms else None
    else:
        ln1 = next((n for n in norms if re.search(r"input|ln_?1|norm_?1|att", n)), None)
        rest = [n for n in norms if n != ln1]
        ln2 = next((n for n in rest if re.search(r"post_att|ln_?2|norm_?2|ff|mlp", n)), None)
        if ln1 is None and norms:
            ln1 = norms[0]
        if ln2 is None and len(norms) > 1:
            ln2 = [n for n in norms if n != ln1][0]
        parts.update(ln1=ln1, ln2=ln2)
    return parts


def _block_list(module: nn.Module) -> tuple[str, nn.ModuleList, dict] | None:
    """The longest ``ModuleList`` of same-class children whose first child has attention and an MLP."""
    best = None
    for path, m in module.named_modules():
        if not isinstance(m, nn.ModuleList) or len(m) == 0 or len({type(c) for c in m}) != 1:
            continue
        if best is not None and len(m) <= len(best[1]):
            continue
        parts = _parts(m[0])
        if parts is not None:
            best = (path, m, parts)
    return best


def _n_heads(attn: nn.Module) -> int | None:
    for obj in (attn, getattr(attn, "config", None)):
        for name in _HEADS:
            val = getattr(obj, name, None)
            if isinstance(val, int) and val > 0:
                return val
    return None


def generic_adapter(module: nn.Module) -> Adapter | None:
    """An adapter guessed from the module tree; None when no block list with attention and MLP is found."""
    found = _block_list(module)
    if found is None:
        return None
    blocks_path, blocks, parts = found
    in_blocks = f"{blocks_path}." if blocks_path else ""
    order = [(p, m) for p, m in module.named_modules() if p]
    embedding = next(((p, m) for p, m in order if isinstance(m, nn.Embedding)), None)
    paths = [p for p, _ in order]
    after = paths.index(blocks_path) + 1 if blocks_path in paths else 0
    outside = [(p, m) for p, m in order[after:] if not p.startswith(in_blocks)]
    final_norm = next((p for p, m in outside if _is_norm(m)), None)
    if final_norm is None:  # registered before the blocks (OPT): a norm beside the block list
        parent = blocks_path.rsplit(".", 1)[0] + "." if "." in blocks_path else ""
        final_norm = next(
            (p for p, m in order if _is_norm(m) and p.startswith(parent) and "." not in p[len(parent) :]),
            None,
        )
    unembed = None
    if embedding is not None:
        vocab = embedding[1].num_embeddings
        unembed = next(
            (p for p, m in reversed(outside) if isinstance(m, nn.Linear) and m.out_features == vocab), None
        )
    config = getattr(module, "config", None)
    parallel = bool(
        getattr(config, "use_parallel_residual", False) or getattr(config, "parallel_attn", False)
    )
    if parallel and parts.get("ln2") is None:
        parts["ln2"] = parts.get("ln1")
    return Adapter(
        name="generic",
        model_types=(),
        embed=embedding[0] if embedding is not None else "<no embedding>",
        blocks=blocks_path,
        final_norm=final_norm,
        unembed=unembed,
        block_style="parallel" if parallel else "sequential",
        n_heads=_n_heads(blocks[0].get_submodule(parts["attn"])),
        **parts,
    )
