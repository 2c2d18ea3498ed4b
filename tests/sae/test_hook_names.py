"""SAELens writes TransformerLens hook names (``blocks.0.hook_resid_post``); ``attach`` and ``evaluate`` map
them to our sites, and ``save`` writes them back for SAELens."""

from __future__ import annotations

import json

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.sae import SAE, Transcoder
from torch_shard_interpret.sae._sites import hook_name_for, site_for, tl_to_site

TEXTS = ["the cat went to the house and the dog was happy", "mary gave a book to john in paris"]


@pytest.fixture(scope="module")
def tiny():
    from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

    return tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer())


@pytest.mark.parametrize(
    ("tl", "ours"),
    [
        ("blocks.3.hook_resid_pre", "blocks.3.resid_pre"),
        ("blocks.3.hook_resid_mid", "blocks.3.resid_mid"),
        ("blocks.10.hook_resid_post", "blocks.10.resid_post"),
        ("blocks.2.hook_attn_out", "blocks.2.attn.out"),
        ("blocks.2.hook_mlp_out", "blocks.2.mlp.out"),
        ("blocks.2.attn.hook_z", "blocks.2.attn.z"),
        ("blocks.2.attn.hook_attn_scores", "blocks.2.attn.scores"),
        ("blocks.2.mlp.hook_post", "blocks.2.mlp.post"),
        ("blocks.2.ln1.hook_scale", "blocks.2.ln1.scale"),
        ("hook_embed", "embed"),
        ("ln_final.hook_normalized", "final_norm"),
    ],
)
def test_names_map_both_ways(tl, ours):
    assert tl_to_site(tl) == ours
    assert hook_name_for(ours) == tl


def test_unknown_names_pass_through(tiny):
    assert tl_to_site("blocks.1.hook_resid_postx") is None
    assert site_for(tiny, "model.layers.0.mlp:input") == "model.layers.0.mlp:input"
    assert site_for(tiny, "blocks.0.hook_nothing") == "blocks.0.hook_nothing"
    # the MLP's input has no named site of ours: a transcoder's ln2.hook_normalized is the raw site
    assert site_for(tiny, "blocks.1.ln2.hook_normalized") == "model.layers.1.mlp:input"


def test_attach_with_a_saelens_hook_name(tiny):
    sae = SAE(d_in=64, d_sae=32, kind="topk", k=4, hook_name="blocks.0.hook_resid_post", seed=0)
    names = sae.attach(tiny)
    try:
        assert names == ["blocks.0.resid_post.sae.latents", "blocks.0.resid_post.sae.error"]
        run = tiny.run(TEXTS[0], cache=["blocks.0.resid_post", names[0]])
        torch.testing.assert_close(run.cache[names[0]], sae.encode(run.cache["blocks.0.resid_post"]))
    finally:
        sae.detach(tiny)
    assert names[0] not in tiny.sites()


def test_attach_names_a_tl_hook_the_model_lacks(tiny):
    sae = SAE(d_in=64, d_sae=32, kind="topk", k=4, hook_name="blocks.9.hook_resid_post")
    with pytest.raises(tsi.SiteNotFoundError, match="blocks.9.resid_post"):
        sae.attach(tiny)


def test_evaluate_with_a_saelens_hook_name_equals_our_name(tiny):
    sae = SAE(d_in=64, d_sae=32, kind="relu", hook_name="blocks.1.hook_resid_post", seed=1)
    by_tl = tsi.sae.evaluate(tiny, sae, TEXTS)
    by_ours = tsi.sae.evaluate(tiny, sae, TEXTS, site="blocks.1.resid_post")
    assert by_tl.site == "blocks.1.resid_post"
    assert by_tl.to_dict() == by_ours.to_dict()


def test_evaluate_a_skip_transcoder_uses_its_skip_term(tiny):
    tc = Transcoder(d_in=64, d_sae=32, kind="relu", skip=True, seed=2, hook_name="blocks.1.ln2.hook_normalized",
                    hook_name_out="blocks.1.hook_mlp_out")  # fmt: skip
    without = tsi.sae.evaluate(tiny, tc, TEXTS)
    run = tiny.run(TEXTS, cache=["model.layers.1.mlp:input", "blocks.1.mlp.out"])
    x, y = run.cache["model.layers.1.mlp:input"], run.cache["blocks.1.mlp.out"]
    keep = run.attention_mask.bool()
    with torch.no_grad():  # a W_skip that predicts the MLP output by least squares
        tc.W_skip.copy_(torch.linalg.lstsq(x[keep], y[keep]).solution.t())
    with_skip = tsi.sae.evaluate(tiny, tc, TEXTS)
    assert with_skip.site == "blocks.1.mlp.out"
    assert with_skip.fvu < without.fvu


def test_save_writes_tl_names_for_saelens_and_ours_for_us(tmp_path):
    sae = SAE(d_in=8, d_sae=16, kind="topk", k=2, hook_name="blocks.4.resid_post")
    sae.save(tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == "blocks.4.hook_resid_post"
    assert cfg["metadata"]["sae_lens_version"].split(".")[0] == "6"
    assert cfg["hook_name"] == "blocks.4.resid_post"
    assert tsi.sae.load(tmp_path / "s").cfg.hook_name == "blocks.4.resid_post"
    SAE(d_in=8, d_sae=16, kind="relu").save(tmp_path / "nosite")
    meta = json.loads((tmp_path / "nosite" / "cfg.json").read_text())["metadata"]
    assert meta["hook_name"] == "" and tsi.sae.load(tmp_path / "nosite").cfg.hook_name is None


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        (dict(kind="abstopk", k=4), "kind='topk'"),
        (dict(kind="relu", transcoder=True, skip=True), "skip=False"),
    ],
)
def test_inference_only_options_refuse_training(fields, needle):
    x = torch.randn(256, 8)
    source = (x, x[:, :4]) if fields.get("transcoder") else x
    with pytest.raises(tsi.sae.SAEError, match=needle):
        tsi.sae.train(source, {"d_sae": 16, **fields}, {"steps": 3, "batch_size": 64}, progress=False)
