"""End to end on the embedded SmolLM2-135M: harvest a store, train a TopK SAE from it, evaluate it on held-out
text, splice it in as sites and check that the latents and the error site behave as documented.

Measured on a busy 2-core machine (single thread): harvest ~2 s, training ~3 s, evaluation ~6 s; held-out
FVU ~0.06, L0 32, CE clean ~3.9 / spliced ~4.4 / zero-ablated ~10.8 (ln 49152: zeroing the residual stream at
layer 6 leaves uniform logits), CE loss recovered ~0.92. The thresholds below leave a wide margin.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import torch_shard_interpret as tsi
from _models import embedded_model
from torch_shard_interpret.testing import tsi_hooks

SITE = "blocks.6.resid_post"
DATA = Path(__file__).parent / "data" / "text.txt"
LENS_DATA = Path(__file__).parents[1] / "techniques" / "data"


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def model():
    return embedded_model()


@pytest.fixture(scope="module")
def corpus():
    """About 2,900 training tokens (193 sentences) and ~550 held-out tokens (40 other sentences)."""
    mine = _lines(DATA)
    train = _lines(LENS_DATA / "lens_train.txt") + mine[:70]
    held_out = _lines(LENS_DATA / "lens_heldout.txt") + mine[70:]
    assert not set(train) & set(held_out)
    return train, held_out


@pytest.fixture(scope="module")
def trained(model, corpus, tmp_path_factory):
    train, _ = corpus
    torch.set_num_threads(1)
    store = tsi.store.harvest(
        model, train, sites=[SITE], path=tmp_path_factory.mktemp("store") / "acts", context=64,
        batch_size=16, progress=False,
    )  # fmt: skip
    assert store.sites == [SITE] and len(store) >= 2500
    sae = tsi.sae.train(
        store,
        {"kind": "topk", "d_sae": 1024, "k": 32},
        {"steps": 300, "batch_size": 256},
        site=SITE,
        progress=False,
    )
    return store, sae


def test_store_trained_sae_reconstructs_held_out_text(model, corpus, trained):
    _, held_out = corpus
    _, sae = trained
    assert sae.cfg.hook_name == SITE and sae.cfg.d_in == model.cfg.d_model == 576
    # one long document (several 128-token windows) plus short texts: exercises context= and batching
    texts = [" ".join(held_out[:20]), *held_out[20:]]
    res = tsi.sae.evaluate(model, sae, texts, context=128, batch_size=8)
    print(res)
    assert res.site == SITE and res.n_tokens > 450
    assert res.l0 == pytest.approx(32.0)
    assert 0 <= res.fvu < 0.3  # measured ~0.05
    assert res.ce_clean < res.ce_spliced < res.ce_zero
    assert res.ce_loss_recovered > 0.6  # measured ~0.92
    expect = (res.ce_zero - res.ce_spliced) / (res.ce_zero - res.ce_clean)
    assert res.ce_loss_recovered == pytest.approx(expect)
    assert res.dead_fraction < 0.2 and res.dense_fraction < 0.2


def test_evaluate_cuts_long_texts_into_context_windows(model, trained):
    _, sae = trained
    long = " ".join(["The quick brown fox jumps over the lazy dog."] * 24)  # ~240 tokens
    n = model.to_tokens(long).shape[1]
    res = tsi.sae.evaluate(model, sae, long, context=32, batch_size=4)
    assert res.n_tokens == n  # nothing dropped, rows of at most 32 tokens
    packed = tsi.sae.evaluate(model, sae, ["a cat.", "a dog."], context=32, pack=True)
    assert packed.n_tokens == len(model.to_tokens("a cat.")[0]) + len(model.to_tokens("a dog.")[0]) + 2


def test_attached_sae_latents_and_error_sites(model, corpus, trained):
    _, held_out = corpus
    _, sae = trained
    prompts = held_out[:3]

    before_sites, before_hooks = set(model.sites()), tsi_hooks(model.module)
    clean = model.run(prompts, cache=SITE)
    x = clean.cache[SITE]
    with torch.no_grad():
        x_hat = sae.decode(sae.encode(x))
    names = sae.attach(model)
    try:
        assert names == [f"{SITE}.sae.latents", f"{SITE}.sae.error"]
        run = model.run(prompts, cache=f"{SITE}.sae.latents")
        with torch.no_grad():
            torch.testing.assert_close(run.cache[f"{SITE}.sae.latents"], sae.encode(x))
        torch.testing.assert_close(run.logits, clean.logits)  # caching the latents changes nothing
        # Zeroing the error leaves decode(latents) = x_hat: the same logits as splicing x_hat in directly.
        no_error = model.run(prompts, interventions={f"{SITE}.sae.error": tsi.Ablate("zero")}).logits
    finally:
        sae.detach(model)
    spliced = model.run(prompts, interventions={SITE: tsi.Set(x_hat)}).logits
    mask = clean.attention_mask.bool()
    torch.testing.assert_close(no_error[mask], spliced[mask], atol=1e-3, rtol=1e-3)
    change = (no_error - clean.logits)[mask].norm(dim=-1)
    assert float(change.mean()) > 1.0  # the reconstruction error matters ...
    recon_err = (x - x_hat)[mask].norm(dim=-1) / x[mask].norm(dim=-1)
    assert float(recon_err.mean()) < 0.5  # ... though it is small next to the activation
    assert set(model.sites()) == before_sites and tsi_hooks(model.module) == before_hooks
    assert not any(".sae." in s for s in model.sites())
