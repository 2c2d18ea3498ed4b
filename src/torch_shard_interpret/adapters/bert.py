"""BERT and RoBERTa masked LMs: post-LayerNorm encoders.

Per layer: ``h = LN_attn(resid_pre + attn.out)``, ``resid_post = LN_out(h + mlp.out)``, where
``attn.out`` is the output of ``attention.output.dense`` and ``mlp.out`` that of ``output.dense`` (dropout
is the identity in eval). ``ln1``/``ln2`` are those two post-norms (``attention.output.LayerNorm``,
``output.LayerNorm``). ``final_norm`` is the LayerNorm of the MLM head (after its dense + GELU), the
input of the decoder.
"""

from dataclasses import replace

from ._base import Adapter

BERT = Adapter(
    name="bert",
    model_types=("bert",),
    embed="bert.embeddings",  # word + position + token type, LayerNorm, dropout
    blocks="bert.encoder.layer",
    attn="attention",
    o_proj="attention.output.dense",
    attn_out="attention.output.dense",
    pattern="attention.self",
    q="attention.self.query",
    k="attention.self.key",
    v="attention.self.value",
    pos_embed="bert.embeddings.position_embeddings",
    mlp=None,
    mlp_down="output.dense",
    mlp_out="output.dense",
    ln1="attention.output.LayerNorm",
    ln2="output.LayerNorm",
    final_norm="cls.predictions.transform.LayerNorm",
    unembed="cls.predictions.decoder",
    block_style="post_norm",
)

ROBERTA = replace(
    BERT,
    name="roberta",
    model_types=("roberta",),
    embed="roberta.embeddings",
    pos_embed="roberta.embeddings.position_embeddings",
    blocks="roberta.encoder.layer",
    final_norm="lm_head.layer_norm",
    unembed="lm_head.decoder",
)
