"""Mixtral (and Qwen2-MoE-style sparse blocks): LLaMA names, but the experts are fused parameters.

The experts hold their down projections as one ``[n_experts, d_model, d_mlp]`` parameter, so no module
sees ``mlp.post``: that site is absent. ``mlp.out`` is the sparse MoE block's output.
"""

from dataclasses import replace

from .llama import LLAMA

MIXTRAL = replace(LLAMA, name="mixtral", model_types=("mixtral",), mlp_down=None)
