"""Pinned by mutation testing (docs/mutation.md): how an adapter's paths find modules, with and without the
root's first component, and which module each role of a block gets."""

from __future__ import annotations

from torch import nn

from torch_shard_interpret.core._adapter import Adapter, find_module
from torch_shard_interpret.core._build import block_modules


def _root():
    block = nn.Module()
    block.attn, block.mlp, block.post_attn, block.post_mlp = (
        nn.Identity(),
        nn.Identity(),
        nn.Identity(),
        nn.ReLU(),
    )
    block.attn.o = nn.Linear(1, 1)
    block.mlp.down = nn.Linear(1, 1)
    root = nn.Module()
    root.inner = nn.Module()
    root.inner.layers = nn.ModuleList([nn.Identity(), block])
    return root, block


def test_find_module_drops_only_the_first_component():
    root, block = _root()
    assert find_module(root, "inner.layers") == ("inner.layers", root.inner.layers)
    assert find_module(root, "model.inner.layers") == ("inner.layers", root.inner.layers)
    assert find_module(root, "model.inner.layers.1.attn")[1] is block.attn
    assert find_module(root, "model.layers") is None and find_module(root, "nothing") is None


def test_block_modules_by_role():
    root, block = _root()
    adapter = Adapter(
        name="toy", model_types=(), embed="e", blocks="model.inner.layers", attn="attn", o_proj="attn.o",
        mlp_down="mlp.down", ln2="post_attn",
    )  # fmt: skip
    mods = block_modules(adapter, root, 1)
    assert set(mods) == {"block", "attn", "o_proj", "mlp", "mlp_down", "ln1", "ln2", "attn_out", "mlp_out"}
    assert mods["block"] is block and mods["o_proj"] is block.attn.o and mods["mlp_down"] is block.mlp.down
    assert mods["attn_out"] is block.attn and mods["mlp_out"] is block.mlp and mods["mlp"] is block.mlp
    assert mods["ln1"] is None and mods["ln2"] is block.post_attn
    post = Adapter(**{**adapter.__dict__, "attn_out": "post_attn", "mlp_out": "post_mlp"})
    mods = block_modules(post, root, 1)
    assert (
        mods["attn_out"] is block.post_attn and mods["mlp_out"] is block.post_mlp and mods["mlp"] is block.mlp
    )
