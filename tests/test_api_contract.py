"""The names and call shapes of ../shared/API.md, exercised once each on a tiny model.

This is the contract acceptance checks rely on: a rename anywhere breaks this file first.
"""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

CLEAN = "when mary and john went to the store john gave a drink to"
CORRUPT = "when john and mary went to the store mary gave a drink to"


def _model():
    return tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer())


def _greedy(model, prompt, n, interventions):
    """Greedy decoding by hand: one full run per new token, no KV cache."""
    ids = model.to_tokens(prompt)  # [1, pos]
    for _ in range(n):
        logits = model.run(ids, interventions=interventions).logits  # [1, pos, d_vocab]
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
    return model.tokenizer.decode(ids[0, -n:], skip_special_tokens=True)


def test_model_surface():
    model = _model()
    assert isinstance(model.module, torch.nn.Module) and model.tokenizer is not None
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.n_heads, model.cfg.d_head) == (2, 64, 4, 16)
    assert model.cfg.d_vocab == 128
    assert "blocks.1.mlp.out" in model.sites() and model.sites("blocks.*.mlp.out") == [
        "blocks.0.mlp.out",
        "blocks.1.mlp.out",
    ]
    assert "model.layers.1.mlp:output" in model.sites()


def test_run_cache_intervene_grad():
    model = _model()
    run = model.run(CLEAN, cache="blocks.*.resid_post")
    assert run.logits.shape[:2] == run.tokens.shape and run.cache["blocks.1.resid_post"].shape[-1] == 64
    assert run.cache.stack("blocks.*.resid_post").shape[0] == 2 and run.str_tokens[0] == "when"
    corrupt = model.run(CORRUPT, cache="blocks.*.resid_post")
    patched = model.run(
        CLEAN,
        interventions={
            "blocks.0.resid_post": tsi.Patch(corrupt.cache, positions=[4]),
            "blocks.1.attn.z": tsi.Ablate("mean", heads=[1, 3]),
        },
    )
    assert not torch.equal(patched.logits, run.logits)
    push = {
        "blocks.1.resid_post": tsi.Add(torch.randn(64, generator=torch.Generator().manual_seed(0)), scale=4.0)
    }
    with model.intervene(push):
        text = model.generate("the cat", max_new_tokens=3)
    assert text == _greedy(model, "the cat", 3, push)  # the KV-cached generation = a full run per token
    g = model.run(CLEAN, cache="blocks.*.resid_post", grad=lambda r: r.logits[0, -1, 5])
    assert g.grads["blocks.0.resid_post"].shape == run.cache["blocks.0.resid_post"].shape
    for iv in (
        tsi.Set(torch.zeros(64)),
        tsi.Scale(0.5),
        tsi.ProjectOut(torch.ones(64)),
        tsi.Fn(lambda v, c: v),
    ):
        model.run(CLEAN, interventions={"blocks.0.resid_post": iv})
    for mode in ("zero", "mean", "resample"):
        model.run([CLEAN, CORRUPT], interventions={"blocks.0.resid_post": tsi.Ablate(mode, batch=[0])})


def test_techniques(tmp_path):
    model = _model()
    mary, john = model.token_id("mary"), model.token_id("john")
    n = model.to_tokens(CLEAN).shape[1]
    run = model.run(CLEAN)
    lens = tsi.lens.logit_lens(model, CLEAN)
    assert lens.probs.shape == (2, n, 128) and lens.top_tokens() and "<" in lens.to_html()
    tuned = tsi.lens.TunedLens.train(model, [CLEAN, CORRUPT], steps=2, progress=False)
    assert tuned(model, CLEAN).probs.shape == (2, n, 128)
    dla = tsi.attribution.direct_logit_attribution(model, CLEAN, target="mary", baseline=None)
    assert abs(sum(dla.components.values()) + dla.remainder - dla.total) < 1e-4
    ig = tsi.attribution.integrated_gradients(model, CLEAN, target="mary", steps=32)
    assert ig.attributions.shape == (n,) and ig.f_input == pytest.approx(
        float(run.logits[0, -1, mary]), rel=1e-4
    )
    assert ig.completeness_error == pytest.approx(float(ig.attributions.sum()) - (ig.f_input - ig.f_baseline))

    def metric(logits):
        return logits[:, -1, mary] - logits[:, -1, john]

    exact = tsi.patching.activation_patching(
        model, CLEAN, CORRUPT, metric, sites="blocks.*.resid_pre", positions="each"
    )
    approx = tsi.patching.attribution_patching(model, CLEAN, CORRUPT, metric, sites="blocks.*.resid_pre")
    assert exact.effects.shape == approx.effects.shape == (2, n)
    sv = tsi.steering.SteeringVector.from_contrast(
        model, ["good great"], ["bad sad"], site="blocks.1.resid_post"
    )
    with sv.apply(model, scale=4.0):
        model.generate("the cat", max_new_tokens=2)
    sv.save(tmp_path / "sv.safetensors")
    assert torch.equal(tsi.steering.SteeringVector.load(tmp_path / "sv.safetensors").vector, sv.vector)
    texts = [f"the {w} is here" for w in ["cat", "dog", "tree", "car"] * 4]
    probes = tsi.probes.fit(model, texts, [i % 2 for i in range(16)], sites="blocks.*.resid_post")
    assert set(probes) == {"blocks.0.resid_post", "blocks.1.resid_post"}
    p = probes["blocks.1.resid_post"]
    assert 0 <= p.accuracy <= 1 and 0 <= p.control_accuracy <= 1
    assert p.selectivity == pytest.approx(p.accuracy - p.control_accuracy)


def test_store_and_sae(tmp_path):
    model = _model()
    texts = [CLEAN, CORRUPT, "the cat and the dog went to the house"] * 8
    store = tsi.store.harvest(
        model, texts, sites=["blocks.1.resid_post"], path=tmp_path / "acts", context=8, progress=False
    )
    store = tsi.store.open(tmp_path / "acts")
    assert store.sites == ["blocks.1.resid_post"] and len(store) > 0
    assert store.read("blocks.1.resid_post", 0, 8).shape == (8, 64) and store.tokens(0, 8).shape == (8,)
    batch = next(iter(store.batches("blocks.1.resid_post", batch_size=16, shuffle=True, seed=0)))
    assert batch.shape == (16, 64)
    sae = tsi.sae.train(
        store,
        {"kind": "topk", "d_sae": 128, "k": 8},
        {"steps": 5},
        site="blocks.1.resid_post",
        progress=False,
    )
    x = store.read("blocks.1.resid_post", 0, 8)
    assert sae.decode(sae.encode(x)).shape == x.shape and sae(x).shape == x.shape
    small = tsi.sae.train(torch.randn(256, 64), {"kind": "topk", "d_sae": 64, "k": 4}, progress=False)
    assert small.encode(torch.randn(2, 64)).shape == (2, 64)
    res = tsi.sae.evaluate(model, sae, texts[:2])
    assert (
        res.n_tokens == sum(model.to_tokens(t).shape[1] for t in texts[:2]) and res.l0 <= 8 and res.fvu >= 0
    )
    sae.save(tmp_path / "sae")
    assert {p.name for p in (tmp_path / "sae").iterdir()} >= {"cfg.json", "sae_weights.safetensors"}
    assert torch.allclose(tsi.sae.load(tmp_path / "sae")(x), sae(x))
