"""LLaMA and its close relatives with the same module names (SmolLM2, Mistral, Qwen2, Qwen3, OLMo)."""

from ._base import Adapter

LLAMA = Adapter(
    name="llama",
    model_types=("llama", "mistral", "qwen2", "qwen3", "olmo"),
    embed="model.embed_tokens",
    blocks="model.layers",
    attn="self_attn",
    o_proj="self_attn.o_proj",
    q="self_attn.q_proj",
    k="self_attn.k_proj",
    v="self_attn.v_proj",
    mlp="mlp",
    mlp_down="mlp.down_proj",
    ln1="input_layernorm",
    ln2="post_attention_layernorm",
    final_norm="model.norm",
    unembed="lm_head",
)
