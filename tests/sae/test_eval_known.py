"""``tsi.sae.evaluate`` against SAEs whose answers are known: an exact one and one that outputs zero.

An exact SAE recovers all the loss (spliced CE = clean CE, FVU 0); one that reconstructs zero recovers none
(spliced CE = zero-ablation CE); the clean CE is the model's own next-token cross-entropy.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import torch_shard_interpret as tsi
from torch_shard_interpret.sae import SAE
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

SITE = "blocks.0.resid_post"
TEXT = "when mary and john went to the store john gave a drink to mary"


@pytest.fixture(scope="module")
def model():
    return tsi.wrap(tiny_hf_model("llama", seed=2), tiny_tokenizer())


def _sae(d: int, exact: bool) -> SAE:
    """ReLU SAE with W_enc = [I, -I] and W_dec = [I; -I]: relu(x) - relu(-x) = x (or a zero decoder)."""
    sae = SAE(d_in=d, d_sae=2 * d, kind="relu", hook_name=SITE)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))  # [d_in, d_sae]
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.W_dec.copy_(torch.cat([eye, -eye], 0) if exact else torch.zeros(2 * d, d))  # [d_sae, d_in]
    return sae


def test_an_exact_sae_recovers_all_the_loss_and_a_zero_one_none(model):
    d = model.cfg.d_model
    ids = model.to_tokens(TEXT)  # [1, pos]
    logits = model.run(ids).logits[0]  # [pos, d_vocab]
    own_ce = float(F.cross_entropy(logits[:-1].float(), ids[0, 1:]))

    exact = tsi.sae.evaluate(model, _sae(d, exact=True), [TEXT])
    assert exact.n_tokens == ids.shape[1]
    assert exact.ce_clean == pytest.approx(own_ce, rel=1e-5)
    assert exact.ce_spliced == pytest.approx(exact.ce_clean, rel=1e-5) and exact.fvu < 1e-8
    assert exact.ce_loss_recovered == pytest.approx(1.0, abs=1e-3)
    assert exact.l0 == pytest.approx(d, abs=2)  # one of relu(x), relu(-x) per dimension (zeros aside)

    with pytest.warns(tsi.sae.SAEWarning):  # reconstructing worse than the mean is worth a warning
        zero = tsi.sae.evaluate(model, _sae(d, exact=False), [TEXT])
    assert zero.ce_spliced == pytest.approx(zero.ce_zero, rel=1e-5) and zero.fvu >= 1.0
    assert zero.ce_loss_recovered == pytest.approx(0.0, abs=1e-3)
    assert zero.ce_clean == pytest.approx(own_ce, rel=1e-5) and zero.ce_zero != pytest.approx(own_ce)
