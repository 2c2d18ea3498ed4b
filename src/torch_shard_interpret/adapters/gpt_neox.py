"""GPT-NeoX / Pythia: parallel attention and MLP when ``use_parallel_residual`` (default), else sequential."""

from dataclasses import replace

from torch import nn

from ._base import Adapter

GPT_NEOX = Adapter(
    name="gpt_neox",
    model_types=("gpt_neox",),
    embed="gpt_neox.emb_dropout",  # embed_in, then dropout (the identity in eval)
    blocks="gpt_neox.layers",
    attn="attention",
    o_proj="attention.dense",
    mlp="mlp",
    mlp_down="mlp.dense_4h_to_h",
    ln1="input_layernorm",
    ln2="post_attention_layernorm",  # the MLP's norm; in parallel blocks it reads resid_pre
    final_norm="gpt_neox.final_layer_norm",
    unembed="lm_head",  # `embed_out` before transformers 5; see configure
    block_style="parallel",
)


def configure(adapter: Adapter, module: nn.Module) -> Adapter:
    """Sequential blocks when the config turns the parallel residual off; the older head name."""
    if isinstance(getattr(module, "embed_out", None), nn.Module):
        adapter = replace(adapter, unembed="embed_out")
    if getattr(getattr(module, "config", None), "use_parallel_residual", True):
        return adapter
    return replace(adapter, block_style="sequential")
