"""``DecoderConfig``: the shapes of a reference decoder, read from a Hugging Face ``config.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import ModelError


@dataclass(frozen=True)
class DecoderConfig:
    """Field names follow ``tsi``'s ``model.cfg`` (n_layers, d_model, n_heads, d_head, d_vocab, d_mlp)."""

    arch: str  # "llama" or "gpt2"
    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_vocab: int
    d_mlp: int
    n_kv_heads: int
    eps: float = 1e-5
    rope_theta: float = 10000.0
    max_pos: int = 2048
    tie: bool = True
    name: str = ""

    @classmethod
    def from_hf(cls, cfg: dict[str, Any], name: str = "") -> DecoderConfig:
        mt = cfg.get("model_type")
        if mt in ("llama", "mistral", "qwen2"):
            rope = cfg.get("rope_parameters") or {}
            d, h = cfg["hidden_size"], cfg["num_attention_heads"]
            if (rope.get("rope_type") or "default") != "default" or cfg.get("rope_scaling"):
                raise ModelError(
                    f"the reference LLaMA supports default RoPE only, not {rope or cfg['rope_scaling']}"
                )
            return cls(
                arch="llama", n_layers=cfg["num_hidden_layers"], d_model=d, n_heads=h,
                d_head=cfg.get("head_dim") or d // h, d_vocab=cfg["vocab_size"], d_mlp=cfg["intermediate_size"],
                n_kv_heads=cfg.get("num_key_value_heads") or h, eps=float(cfg.get("rms_norm_eps", 1e-6)),
                rope_theta=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))),
                max_pos=cfg.get("max_position_embeddings", 2048), tie=bool(cfg.get("tie_word_embeddings", False)),
                name=name,
            )  # fmt: skip
        if mt == "gpt2":
            d, h = cfg["n_embd"], cfg["n_head"]
            return cls(
                arch="gpt2", n_layers=cfg["n_layer"], d_model=d, n_heads=h, d_head=d // h,
                d_vocab=cfg["vocab_size"], d_mlp=cfg.get("n_inner") or 4 * d, n_kv_heads=h,
                eps=float(cfg.get("layer_norm_epsilon", 1e-5)), max_pos=cfg["n_positions"], tie=True, name=name,
            )  # fmt: skip
        raise ModelError(
            f"no reference model for model_type {mt!r}; jsi.models has 'llama' and 'gpt2' layouts"
        )

    @classmethod
    def from_dir(cls, path: str | Path) -> DecoderConfig:
        path = Path(path)
        try:
            cfg = json.loads((path / "config.json").read_text())
        except FileNotFoundError:
            raise ModelError(f"{str(path)!r} has no config.json; give a Hugging Face model folder") from None
        return cls.from_hf(cfg, name=cfg.get("_name_or_path") or path.name)
