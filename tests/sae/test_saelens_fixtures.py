"""SAEs made and saved by SAELens 6.54 itself (``benchmarks/saelens_fixtures.py``): ours must load each one
and give SAELens's own recorded ``encode``, ``decode`` and ``forward`` outputs to float tolerance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import torch_shard_interpret as tsi

DATA = Path(__file__).parent / "data" / "saelens"
CASES = sorted(p.name for p in DATA.iterdir() if (p / "cfg.json").is_file())
KIND = {
    "standard": ("relu", False, False),
    "standard_no_b_dec_in": ("relu", False, False),
    "topk": ("topk", False, False),
    "topk_rescaled": ("topk", False, False),
    "abstopk": ("abstopk", False, False),
    "abstopk_rescaled": ("abstopk", False, False),
    "jumprelu": ("jumprelu", False, False),
    "transcoder": ("relu", True, False),
    "skip_transcoder": ("relu", True, True),
    "jumprelu_transcoder": ("jumprelu", True, False),
    "jumprelu_skip_transcoder": ("jumprelu", True, True),
    "batchtopk_inference": ("jumprelu", False, False),
}


def test_every_option_has_a_fixture():
    assert sorted(KIND) == CASES
    for case in CASES:
        assert json.loads((DATA / case / "made_by.json").read_text())["sae_lens"] == "6.54.12"


@pytest.mark.parametrize("case", CASES)
def test_outputs_equal_saelens(case):
    sae = tsi.sae.load(DATA / case)
    want = load_file(str(DATA / case / "expected.safetensors"))
    assert (sae.cfg.kind, sae.cfg.transcoder, sae.cfg.skip) == KIND[case]
    x = want["x"]
    with torch.no_grad():
        z = sae.encode(x)
        torch.testing.assert_close(z, want["encode"], rtol=1e-5, atol=1e-5)
        assert torch.equal(z != 0, want["encode"] != 0)  # the same latents are selected
        torch.testing.assert_close(sae.decode(want["encode"]), want["decode"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sae(x), want["forward"], rtol=1e-5, atol=1e-5)


def test_rescaled_topk_selects_on_decoder_scaled_pre_activations():
    """Loading without the rescaling (as tsi once did) picks other latents: the fixture can tell them apart."""
    raw = load_file(str(DATA / "topk_rescaled" / "sae_weights.safetensors"))
    want = load_file(str(DATA / "topk_rescaled" / "expected.safetensors"))
    x = want["x"]
    pre = (x - raw["b_dec"]) @ raw["W_enc"] + raw["b_enc"]
    plain = pre.topk(4, dim=-1).indices.sort(-1).values
    scaled = (pre * raw["W_dec"].norm(dim=-1)).topk(4, dim=-1).indices.sort(-1).values
    assert not torch.equal(plain, scaled)
    chosen = (want["encode"] != 0).nonzero()[:, -1].reshape(2, 3, 4)
    assert torch.equal(chosen, scaled)


def test_abstopk_keeps_negative_latents_and_skip_term_matters():
    want = load_file(str(DATA / "abstopk" / "expected.safetensors"))
    assert bool((want["encode"] < 0).any())  # signs kept: TopK with a ReLU would zero these
    topk = tsi.sae.load(DATA / "abstopk")
    assert (topk.encode(want["x"]) < 0).any()
    skip = load_file(str(DATA / "skip_transcoder" / "expected.safetensors"))
    assert not torch.allclose(skip["decode"], skip["forward"], atol=1e-3)  # forward = decode + x @ W_skip.T


@pytest.mark.parametrize("case", CASES)
def test_saved_by_us_reads_back_the_same(case, tmp_path):
    sae = tsi.sae.load(DATA / case)
    sae.save(tmp_path / "ours")
    cfg = json.loads((tmp_path / "ours" / "cfg.json").read_text())
    assert cfg["metadata"]["sae_lens_version"] and cfg["metadata"]["hook_name"] == "blocks.0.hook_resid_post"
    back = tsi.sae.load(tmp_path / "ours")
    assert back.cfg == sae.cfg
    want = load_file(str(DATA / case / "expected.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(back(want["x"]), want["forward"], rtol=1e-5, atol=1e-5)
