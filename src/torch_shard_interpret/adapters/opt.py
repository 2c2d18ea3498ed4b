"""OPT: no MLP submodule (``fc1``/``fc2`` sit on the layer) and the MLP runs on flattened tokens.

OPT reshapes the hidden states to ``[batch*pos, d_model]`` before the MLP, so ``mlp.post`` and ``mlp.out``
are ``[batch*pos, ...]`` (layout ``tokens``): reshape with ``.view(batch, pos, -1)``. ``embed`` is the token
embedding only; OPT adds its learned positions with a plain ``+``, which no module outputs. Configs with
``do_layer_norm_before=False`` (OPT-350m) normalise after each residual add: post-norm blocks.
"""

from dataclasses import replace

from torch import nn

from ._base import Adapter

OPT = Adapter(
    name="opt",
    model_types=("opt",),
    embed="model.decoder.embed_tokens",
    blocks="model.decoder.layers",
    attn="self_attn",
    o_proj="self_attn.out_proj",
    q="self_attn.q_proj",
    k="self_attn.k_proj",
    v="self_attn.v_proj",
    pos_embed="model.decoder.embed_positions",
    mlp=None,
    mlp_down="fc2",
    mlp_out="fc2",
    ln1="self_attn_layer_norm",
    ln2="final_layer_norm",
    final_norm="model.decoder.final_layer_norm",
    unembed="lm_head",
    mlp_flat=True,
    config={"d_mlp": ("ffn_dim",)},
)


def configure(adapter: Adapter, module: nn.Module) -> Adapter:
    """Post-norm blocks for configs with ``do_layer_norm_before=False``."""
    if getattr(getattr(module, "config", None), "do_layer_norm_before", True):
        return adapter
    return replace(adapter, block_style="post_norm")
