"""OLMo 2: no pre-norms; ``post_attention_layernorm`` and ``post_feedforward_layernorm`` normalise each
sublayer's output before the residual add, so those outputs are ``attn.out`` and ``mlp.out``."""

from dataclasses import replace

from .llama import LLAMA

OLMO2 = replace(
    LLAMA,
    name="olmo2",
    model_types=("olmo2", "olmo3"),
    attn_out="post_attention_layernorm",
    mlp_out="post_feedforward_layernorm",
    ln1=None,
    ln2=None,
)
