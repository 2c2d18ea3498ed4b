"""A model dispatched by accelerate (cpu + disk offload) works unchanged."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import tiny_hf_model

pytest.importorskip("accelerate")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    plain = tiny_hf_model("llama", num_hidden_layers=3)
    saved = tmp_path_factory.mktemp("tiny")
    plain.save_pretrained(saved)
    device_map = {
        "model.embed_tokens": "cpu",
        "model.rotary_emb": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "disk",
        "model.layers.2": "disk",
        "model.norm": "cpu",
        "lm_head": "cpu",
    }
    sharded = AutoModelForCausalLM.from_pretrained(
        saved, device_map=device_map, offload_folder=str(tmp_path_factory.mktemp("offload"))
    ).eval()
    assert "disk" in set(sharded.hf_device_map.values())
    return tsi.wrap(plain), tsi.wrap(sharded)


IDS = torch.randint(4, 128, (2, 6), generator=torch.Generator().manual_seed(0))


def test_offloaded_cache_equals_plain(pair):
    plain, sharded = pair
    a = plain.run(IDS, cache="blocks.*.resid_post")
    b = sharded.run(IDS, cache="blocks.*.resid_post", cache_device="cpu")
    assert torch.equal(a.logits, b.logits)
    for name in a.cache:
        assert torch.equal(a.cache[name], b.cache[name])
        assert b.cache[name].device.type == "cpu"


def test_offloaded_interventions_grads_and_generation(pair):
    plain, sharded = pair
    v = torch.randn(64)
    ivs = {"blocks.1.resid_post": tsi.Add(v), "blocks.2.attn.z": tsi.Ablate("zero", heads=1)}
    torch.testing.assert_close(
        plain.run(IDS, interventions=ivs).logits, sharded.run(IDS, interventions=ivs).logits
    )
    ga = plain.run(IDS, cache="blocks.1.resid_post", grad=lambda r: r.logits[0, -1, 0])
    gb = sharded.run(IDS, cache="blocks.1.resid_post", grad=lambda r: r.logits[0, -1, 0])
    torch.testing.assert_close(ga.grads["blocks.1.resid_post"], gb.grads["blocks.1.resid_post"])
    steer = {"blocks.1.resid_post": tsi.Add(v, scale=5.0)}
    assert torch.equal(
        plain.generate(IDS[:1], max_new_tokens=4, interventions=steer),
        sharded.generate(IDS[:1], max_new_tokens=4, interventions=steer),
    )
