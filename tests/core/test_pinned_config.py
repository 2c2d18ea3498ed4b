"""Pinned by mutation testing (docs/mutation.md): which source ``make_config`` takes each size from when a
model has a partial Hugging Face config, a nested text config, or none at all."""

from __future__ import annotations

import types

from torch import nn

from torch_shard_interpret.core._adapter import Adapter
from torch_shard_interpret.core._config import make_config


def _adapter(**kw):
    return Adapter(
        name="toy", model_types=("toy",), embed="model.embed", blocks="model.layers", attn="attn",
        o_proj="attn.o", mlp_down="mlp.down", block_style="parallel", **kw,
    )  # fmt: skip


def _module(n_blocks=3, config=None):
    root = nn.Module()
    root.model = nn.Module()
    root.model.layers = nn.ModuleList(nn.Identity() for _ in range(n_blocks))
    if config is not None:
        root.config = config
    return root


def test_without_a_config_the_adapter_and_the_blocks_give_the_sizes():
    cfg = make_config(_module(3), _adapter(n_heads=4))
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head) == (3, 4, None, None)
    assert (cfg.architecture, cfg.block_style) == ("toy", "parallel")


def test_the_config_wins_over_the_adapter_and_the_blocks():
    config = types.SimpleNamespace(num_hidden_layers=7, hidden_size=96, num_attention_heads=8)
    cfg = make_config(_module(3, config), _adapter(n_heads=4))
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model) == (7, 8, 96)
    assert cfg.d_head == 12 and type(cfg.d_head) is int


def test_an_explicit_head_dim_is_kept():
    config = types.SimpleNamespace(hidden_size=96, num_attention_heads=8, head_dim=32)
    assert make_config(_module(3, config), None).d_head == 32


def test_a_nested_text_config_is_read_and_adapter_names_come_first():
    text = types.SimpleNamespace(hidden_size=64, n_head=4, width=80)
    outer = types.SimpleNamespace(hidden_size=999, get_text_config=lambda: text)
    cfg = make_config(_module(2, outer), _adapter(config={"d_model": ("width",)}))
    assert (cfg.d_model, cfg.n_heads, cfg.d_head, cfg.n_layers) == (80, 4, 20, 2)
    assert make_config(_module(2, outer), None).d_model == 64


def test_a_module_without_config_or_adapter_has_no_sizes():
    cfg = make_config(_module(2), None)
    assert (cfg.n_layers, cfg.n_heads, cfg.architecture, cfg.block_style) == (None, None, None, None)
