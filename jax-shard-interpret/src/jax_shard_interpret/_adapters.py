"""Adapters: canonical site names -> raw sites (module path, side, view), for models with a known layout.

An adapter describes where a decoder keeps its parts, by module path relative to the wrapped module. The
reference models (``jsi.models``) follow the LLaMA layout (``embed_tokens``, ``layers``, ``self_attn``,
``o_proj``, ``mlp``, ``down_proj``, ``norm``, ``lm_head``) or the GPT-2 layout; any user model with the
same paths gets the canonical names too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HeadsView:
    """``[..., n_heads * d_head]`` seen as ``[..., n_heads, d_head]`` (the ``attn.z`` site)."""

    n_heads: int

    def to_site(self, x: Any) -> Any:
        return x.reshape(*x.shape[:-1], self.n_heads, x.shape[-1] // self.n_heads)

    def from_site(self, v: Any, x: Any) -> Any:
        return v.reshape(x.shape)


@dataclass(frozen=True)
class Adapter:
    name: str
    embed: str
    blocks: str
    attn: str
    o_proj: str
    mlp: str
    mlp_down: str
    ln1: str
    ln2: str
    final_norm: str
    unembed: str
    pattern: str

    def layout(self, module_paths: set[str]) -> int | None:
        """The number of blocks if the model has this layout, else None."""
        need = [self.embed, self.final_norm, self.unembed]
        if not all(p in module_paths for p in need):
            return None
        n = 0
        while f"{self.blocks}.{n}" in module_paths:
            n += 1
        if n == 0 or f"{self.blocks}.0.{self.mlp_down}" not in module_paths:
            return None
        return n

    def sites(
        self, n_layers: int, n_heads: int | None, module_paths: set[str]
    ) -> dict[str, tuple[str, str, Any]]:
        """canonical name -> (module path, "input" | "output", view or None)."""
        out: dict[str, tuple[str, str, Any]] = {"embed": (self.embed, "output", None)}
        for i in range(n_layers):
            b = f"{self.blocks}.{i}"
            out[f"blocks.{i}.resid_pre"] = (b, "input", None)
            if n_heads:
                out[f"blocks.{i}.attn.z"] = (f"{b}.{self.o_proj}", "input", HeadsView(n_heads))
            if f"{b}.{self.pattern}" in module_paths:
                out[f"blocks.{i}.attn.pattern"] = (f"{b}.{self.pattern}", "output", None)
            out[f"blocks.{i}.attn.out"] = (f"{b}.{self.attn}", "output", None)
            out[f"blocks.{i}.mlp.post"] = (f"{b}.{self.mlp_down}", "input", None)
            out[f"blocks.{i}.mlp.out"] = (f"{b}.{self.mlp}", "output", None)
            out[f"blocks.{i}.resid_post"] = (b, "output", None)
        out["final_norm"] = (self.final_norm, "output", None)
        out["logits"] = (self.unembed, "output", None)
        return out


LLAMA = Adapter(
    name="llama", embed="embed_tokens", blocks="layers", attn="self_attn", o_proj="self_attn.o_proj",
    mlp="mlp", mlp_down="mlp.down_proj", ln1="input_layernorm", ln2="post_attention_layernorm",
    final_norm="norm", unembed="lm_head", pattern="self_attn.pattern",
)  # fmt: skip
GPT2 = Adapter(
    name="gpt2", embed="embed", blocks="h", attn="attn", o_proj="attn.c_proj", mlp="mlp",
    mlp_down="mlp.c_proj", ln1="ln_1", ln2="ln_2", final_norm="ln_f", unembed="lm_head",
    pattern="attn.pattern",
)  # fmt: skip
ADAPTERS = (LLAMA, GPT2)


def find_adapter(module_paths: set[str]) -> tuple[Adapter | None, int]:
    for a in ADAPTERS:
        n = a.layout(module_paths)
        if n:
            return a, n
    return None, 0
