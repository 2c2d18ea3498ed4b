"""TransformerLens hook names (what SAELens writes in ``hook_name``) and our site names, both ways.

``site_for(model, "blocks.3.hook_resid_post")`` is ``"blocks.3.resid_post"``; a name the model already has
is returned as it is, and a name with no counterpart is returned unchanged (the model then says what it
has). ``hook_name_for("blocks.3.resid_post")`` is the TransformerLens name SAELens users expect.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..core._model import Model

_BLOCK = {  # TransformerLens hook inside blocks.{i} -> our site inside blocks.{i}
    "hook_resid_pre": "resid_pre",
    "hook_resid_mid": "resid_mid",
    "hook_resid_post": "resid_post",
    "hook_attn_out": "attn.out",
    "hook_mlp_out": "mlp.out",
    "attn.hook_q": "attn.q",
    "attn.hook_k": "attn.k",
    "attn.hook_v": "attn.v",
    "attn.hook_z": "attn.z",
    "attn.hook_attn_scores": "attn.scores",
    "attn.hook_pattern": "attn.pattern",
    "mlp.hook_post": "mlp.post",
    "ln1.hook_scale": "ln1.scale",
    "ln2.hook_scale": "ln2.scale",
}
_TOP = {"hook_embed": "embed", "hook_pos_embed": "pos_embed", "ln_final.hook_scale": "final_norm.scale",
        "ln_final.hook_normalized": "final_norm"}  # fmt: skip
_MLP_IN = ("ln2.hook_normalized", "hook_mlp_in")  # the MLP's input (pre-norm blocks): no named site of ours
_BACK_BLOCK = {ours: tl for tl, ours in _BLOCK.items()}
_BACK_TOP = {ours: tl for tl, ours in _TOP.items()}
_IN_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")


def tl_to_site(name: str) -> str | None:
    """Our site for a TransformerLens hook name, without a model (None: no named counterpart)."""
    if name in _TOP:
        return _TOP[name]
    m = _IN_BLOCK.fullmatch(name)
    if m and m.group(2) in _BLOCK:
        return f"blocks.{m.group(1)}.{_BLOCK[m.group(2)]}"
    return None


def site_for(model: Model, name: str) -> str:
    """The site of ``model`` that ``name`` (ours, raw, or a TransformerLens hook name) refers to."""
    known = set(model.sites())
    if name in known:
        return name
    ours = tl_to_site(name)
    if ours is not None:
        return ours
    m = _IN_BLOCK.fullmatch(name)
    if m and m.group(2) in _MLP_IN:  # the input of the module whose output is blocks.{i}.mlp.out
        out = f"blocks.{m.group(1)}.mlp.out"
        if out in known:
            path = model.site(out).module_path
            return f"{path}:input"
    return name


def hook_name_for(site: str) -> str:
    """The TransformerLens hook name of one of our sites (a raw or unknown name is returned unchanged)."""
    if site in _BACK_TOP:
        return _BACK_TOP[site]
    m = _IN_BLOCK.fullmatch(site)
    if m and m.group(2) in _BACK_BLOCK:
        return f"blocks.{m.group(1)}.{_BACK_BLOCK[m.group(2)]}"
    return site
