"""Gemma 1 (LLaMA layout) and Gemma 2/3 (sandwich norms).

In Gemma 1 ``post_attention_layernorm`` is the norm before the MLP, as in LLaMA. In Gemma 2 and 3 it is
applied to the attention output before the residual add, and the MLP sits between
``pre_feedforward_layernorm`` and ``post_feedforward_layernorm``; so ``attn.out`` and ``mlp.out`` are the
outputs of the post-norms. The embedding module multiplies by sqrt(d_model) itself, so ``embed`` is the
block-0 input. ``logits`` is the ``lm_head`` output: Gemma 2/3 soft-cap it afterwards
(``final_logit_softcapping``), so the model's returned logits can differ from that site.
"""

from dataclasses import replace

from .llama import LLAMA

GEMMA = replace(LLAMA, name="gemma", model_types=("gemma",))

GEMMA2 = replace(
    LLAMA,
    name="gemma2",
    model_types=("gemma2", "gemma3_text"),
    attn_out="post_attention_layernorm",
    mlp_out="post_feedforward_layernorm",
    ln2="pre_feedforward_layernorm",
)
