"""GPT-J: parallel blocks; attention and MLP both read ``ln_1(resid_pre)``."""

from ._base import Adapter

GPTJ = Adapter(
    name="gptj",
    model_types=("gptj",),
    embed="transformer.drop",  # wte (+ token types), then dropout (the identity in eval)
    blocks="transformer.h",
    attn="attn",
    o_proj="attn.out_proj",
    q="attn.q_proj",
    k="attn.k_proj",
    v="attn.v_proj",
    mlp="mlp",
    mlp_down="mlp.fc_out",
    ln1="ln_1",
    ln2="ln_1",  # shared: the MLP reads the same normalised resid_pre
    final_norm="transformer.ln_f",
    unembed="lm_head",
    block_style="parallel",
)
