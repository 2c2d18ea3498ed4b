"""Cohere (Command-R): parallel blocks; attention and MLP both read ``input_layernorm(resid_pre)``."""

from dataclasses import replace

from .llama import LLAMA

COHERE = replace(LLAMA, name="cohere", model_types=("cohere",), ln2="input_layernorm", block_style="parallel")
