"""Splice sites: an encoder/decoder pair at a site becomes two sites (latents, error)."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import tiny_hf_model

IDS = torch.randint(4, 128, (2, 6), generator=torch.Generator().manual_seed(0))
SITE = "blocks.0.resid_post"


@pytest.fixture()
def model():
    model = tsi.wrap(tiny_hf_model("llama"))
    g = torch.Generator().manual_seed(0)
    w_enc, w_dec = torch.randn(64, 32, generator=g) / 8, torch.randn(32, 64, generator=g) / 8
    model.add_splice(SITE, "sae", lambda x: torch.relu(x @ w_enc), lambda z: z @ w_dec)
    model.w = (w_enc, w_dec)
    return model


def test_caching_latents_changes_nothing(model):
    plain = model.run(IDS, cache=SITE)
    run = model.run(IDS, cache=[SITE, f"{SITE}.sae.latents", f"{SITE}.sae.error"])
    assert torch.equal(run.logits, plain.logits)
    w_enc, w_dec = model.w
    x = plain.cache[SITE]
    torch.testing.assert_close(run.cache[f"{SITE}.sae.latents"], torch.relu(x @ w_enc))
    torch.testing.assert_close(run.cache[f"{SITE}.sae.latents"] @ w_dec + run.cache[f"{SITE}.sae.error"], x)
    assert run.cache[f"{SITE}.sae.latents"].shape == (2, 6, 32)


def test_patching_latents_and_error(model):
    w_enc, w_dec = model.w
    x = model.run(IDS, cache=SITE).cache[SITE]
    latents = torch.relu(x @ w_enc)
    # Zeroing the error leaves the reconstruction only.
    run = model.run(IDS, cache=SITE, interventions={f"{SITE}.sae.error": tsi.Ablate("zero")})
    torch.testing.assert_close(run.cache[SITE], latents @ w_dec)
    # Ablating one latent removes its decoder direction times its activation.
    run = model.run(
        IDS,
        cache=SITE,
        interventions={f"{SITE}.sae.latents": tsi.Fn(lambda v, c: v * torch.arange(32).ne(5))},
    )
    torch.testing.assert_close(run.cache[SITE], x - latents[..., 5:6] * w_dec[5])


def test_grads_wrt_latents(model):
    run = model.run(IDS, cache=[f"{SITE}.sae.latents"], grad=lambda r: r.logits[0, -1, 3])
    assert run.grads[f"{SITE}.sae.latents"].shape == (2, 6, 32)
    assert run.grads[f"{SITE}.sae.latents"].abs().sum() > 0


def test_remove_splice(model):
    model.remove_splice(SITE, "sae")
    with pytest.raises(tsi.SiteNotFoundError):
        model.run(IDS, cache=f"{SITE}.sae.latents")


def test_grads_through_a_splice_stay_exact(model):
    """Recording latents must not change the gradient at earlier sites."""
    plain = model.run(IDS, cache=["blocks.0.resid_pre"], grad=lambda r: r.logits[0, -1, 3])
    spliced = model.run(
        IDS, cache=["blocks.0.resid_pre", f"{SITE}.sae.latents"], grad=lambda r: r.logits[0, -1, 3]
    )
    torch.testing.assert_close(plain.grads["blocks.0.resid_pre"], spliced.grads["blocks.0.resid_pre"])
    w_enc, w_dec = model.w
    g_x = model.run(IDS, cache=[SITE], grad=lambda r: r.logits[0, -1, 3]).grads[SITE]
    torch.testing.assert_close(spliced.grads[f"{SITE}.sae.latents"], g_x @ w_dec.T)
