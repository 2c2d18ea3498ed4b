"""``register_adapter`` and ``Adapter``: a custom architecture, unknown to tsi, named by one record."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import torch_shard_interpret as tsi
from torch_shard_interpret.adapters import _registry


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.norm_a = nn.LayerNorm(d)
        self.mix = nn.ModuleDict({"qkv": nn.Linear(d, 3 * d), "out": nn.Linear(d, d)})
        self.norm_b = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.heads = heads

    def forward(self, x):
        b, p, d = x.shape
        q, k, v = self.mix["qkv"](self.norm_a(x)).view(b, p, 3, self.heads, -1).unbind(2)
        att = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5, -1)
        z = torch.einsum("bhqk,bkhd->bqhd", att, v).reshape(b, p, d)
        x = x + self.mix["out"](z)
        return x + self.ff(self.norm_b(x))


class Toyformer(nn.Module):
    """Names no heuristic knows: ``trunk``, ``mix``, ``ff``, ``tok``, ``readout``."""

    def __init__(self, d=16, heads=4, n=3, vocab=50):
        super().__init__()
        self.config = SimpleNamespace(model_type="toyformer", n_layer=n, n_embd=d)
        self.tok = nn.Embedding(vocab, d)
        self.trunk = nn.ModuleList(Block(d, heads) for _ in range(n))
        self.final = nn.LayerNorm(d)
        self.readout = nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        x = self.tok(ids)
        for block in self.trunk:
            x = block(x)
        return self.readout(self.final(x))


TOY = tsi.adapters.Adapter(
    name="toyformer",
    model_types=("toyformer",),
    embed="tok",
    blocks="trunk",
    attn="mix",
    o_proj="mix.out",
    attn_out="mix.out",  # `mix` is a ModuleDict that is never called: its output projection writes
    mlp="ff",
    mlp_down="ff.2",
    ln1="norm_a",
    ln2="norm_b",
    final_norm="final",
    unembed="readout",
    n_heads=4,
)


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry, so that the test's registrations do not leak."""
    monkeypatch.setattr(_registry, "_ADAPTERS", dict(_registry._ADAPTERS))
    monkeypatch.setattr(_registry, "_CONFIGURE", dict(_registry._CONFIGURE))
    return _registry


def test_unregistered_toy_gets_no_canonical_sites_of_ours():
    model = tsi.wrap(Toyformer())  # no heuristic recognises `mix`/`ff` as attention and MLP
    assert model.adapter is None and model.sites("blocks.*") == []


def test_registered_adapter_names_every_site(registry):
    assert tsi.adapters.register_adapter(TOY) is TOY
    assert tsi.adapters.registered()["toyformer"] is TOY
    module = Toyformer().eval()
    model = tsi.wrap(module)
    assert model.adapter is TOY and model.cfg.architecture == "toyformer"
    assert model.cfg.n_layers == 3 and model.cfg.d_model == 16 and model.cfg.n_heads == 4
    assert model.cfg.d_head == 4
    assert model.sites("blocks.2.*")[:2] == ["blocks.2.resid_pre", "blocks.2.ln1.scale"]

    ids = torch.randint(0, 50, (2, 7))
    run = model.run(
        ids,
        cache=[
            "embed",
            "blocks.*.resid_pre",
            "blocks.*.resid_post",
            "blocks.*.attn.out",
            "blocks.*.mlp.out",
            "blocks.*.attn.z",
            "blocks.*.mlp.post",
            "final_norm",
            "logits",
        ],
    )
    c = run.cache
    torch.testing.assert_close(c["embed"], module.tok(ids))
    for i in range(3):
        prev = c["embed"] if i == 0 else c[f"blocks.{i - 1}.resid_post"]
        torch.testing.assert_close(c[f"blocks.{i}.resid_pre"], prev)
        # sequential block: resid_post = resid_pre + attn.out + mlp.out
        torch.testing.assert_close(
            c[f"blocks.{i}.resid_post"],
            c[f"blocks.{i}.resid_pre"] + c[f"blocks.{i}.attn.out"] + c[f"blocks.{i}.mlp.out"],
        )
        z = c[f"blocks.{i}.attn.z"]
        assert z.shape == (2, 7, 4, 4)
        torch.testing.assert_close(module.trunk[i].mix["out"](z.flatten(-2)), c[f"blocks.{i}.attn.out"])
        assert c[f"blocks.{i}.mlp.post"].shape == (2, 7, 64)
    torch.testing.assert_close(c["logits"], run.logits)
    torch.testing.assert_close(module.readout(c["final_norm"]), run.logits)
    # block_modules finds the roles by the record
    mods = model.block_modules(1)
    assert mods["attn"] is module.trunk[1].mix and mods["mlp_down"] is module.trunk[1].ff[2]
    assert mods["ln1"] is module.trunk[1].norm_a


def test_registered_sites_can_be_changed(registry):
    tsi.adapters.register_adapter(TOY)
    model = tsi.wrap(Toyformer().eval())
    ids = torch.randint(0, 50, (1, 5))
    clean = model.run(ids, cache="blocks.0.resid_post")
    zeroed = model.run(
        ids,
        interventions={"blocks.0.attn.z": tsi.Ablate("zero", heads=[0, 1, 2, 3])},
        cache=["blocks.0.attn.out"],
    )
    out_proj = model.module.trunk[0].mix["out"]
    torch.testing.assert_close(zeroed.cache["blocks.0.attn.out"], out_proj.bias.expand(1, 5, 16))
    assert not torch.allclose(zeroed.logits, clean.logits)


def test_configure_adjusts_the_record_per_model(registry):
    seen = []

    def configure(adapter, module):
        seen.append(module)
        return replace(adapter, name="toy-parallel", block_style="parallel")

    tsi.adapters.register_adapter(TOY, configure=configure)
    module = Toyformer()
    model = tsi.wrap(module)
    assert seen == [module]
    assert model.cfg.architecture == "toy-parallel" and model.cfg.block_style == "parallel"


def test_explicit_adapter_and_raw_only():
    module = Toyformer()
    assert tsi.wrap(module, adapter=TOY).sites("blocks.0.resid_pre") == ["blocks.0.resid_pre"]
    raw = tsi.wrap(module, adapter=None)
    assert raw.sites("blocks.*") == [] and "trunk.0:output" in raw.sites()


def test_wrong_adapter_paths_are_named():
    with pytest.raises(tsi.AdapterError, match=r"trunk\.0\.attention"):
        tsi.wrap(Toyformer(), adapter=replace(TOY, attn="attention", o_proj="attention.o"))
    with pytest.raises(tsi.AdapterError, match="block list at 'layers'"):
        tsi.wrap(Toyformer(), adapter=replace(TOY, blocks="layers"))
    with pytest.raises(tsi.AdapterError, match="tsi.wrap"):
        tsi.Model(Toyformer(), adapter="auto")  # type: ignore[arg-type]
