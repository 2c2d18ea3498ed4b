"""Phi-3: LLaMA names with fused ``qkv_proj`` and ``gate_up_proj`` (o/down projections keep their names)."""

from dataclasses import replace

from .llama import LLAMA

PHI3 = replace(LLAMA, name="phi3", model_types=("phi3",), q=None, k=None, v=None, qkv="self_attn.qkv_proj")
