"""GPT-2."""

from ._base import Adapter

GPT2 = Adapter(
    name="gpt2",
    model_types=("gpt2",),
    embed="transformer.drop",  # token + position embedding (dropout is the identity in eval)
    blocks="transformer.h",
    attn="attn",
    o_proj="attn.c_proj",
    qkv="attn.c_attn",  # q | k | v along the last dimension
    pos_embed="transformer.wpe",
    mlp="mlp",
    mlp_down="mlp.c_proj",
    ln1="ln_1",
    ln2="ln_2",
    final_norm="transformer.ln_f",
    unembed="lm_head",
)
