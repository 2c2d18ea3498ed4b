"""Round trips through SAELens itself: saved by tsi and loaded by SAELens, and saved by SAELens and loaded by
tsi, for every architecture both support. Runs only where SAELens is installed (the benchmark environment,
see benchmarks/README.md), never in ``make test``:

    PYTHONPATH=src /work/bvenv/bin/python -m pytest -q -p no:cacheprovider benchmarks/test_saelens_roundtrip.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sl = pytest.importorskip("sae_lens")  # the benchmark environment only: this file is outside testpaths

import torch_shard_interpret as tsi  # noqa: E402
from torch_shard_interpret.sae import SAE, Transcoder  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import saelens_fixtures as fixtures  # noqa: E402

D_IN, D_SAE, D_OUT = 8, 16, 12
OURS = {  # our config -> the SAELens class that must come back
    "relu": (dict(kind="relu"), "StandardSAE"),
    "relu_no_b_dec_in": (dict(kind="relu", apply_b_dec_to_input=False), "StandardSAE"),
    "topk": (dict(kind="topk", k=4), "TopKSAE"),
    "abstopk": (dict(kind="abstopk", k=4), "AbsTopKSAE"),
    "jumprelu": (dict(kind="jumprelu"), "JumpReLUSAE"),
    "batchtopk": (dict(kind="batchtopk", k=4), "JumpReLUSAE"),
    "transcoder": (dict(kind="relu", transcoder=True, d_out=D_OUT), "Transcoder"),
    "skip_transcoder": (dict(kind="relu", transcoder=True, d_out=D_OUT, skip=True), "SkipTranscoder"),
    "jumprelu_transcoder": (dict(kind="jumprelu", transcoder=True, d_out=D_OUT), "JumpReLUTranscoder"),
    "jumprelu_skip_transcoder": (
        dict(kind="jumprelu", transcoder=True, d_out=D_OUT, skip=True),
        "JumpReLUSkipTranscoder",
    ),
}


def _ours(fields: dict, seed: int, hook: str | None) -> SAE:
    cls = Transcoder if fields.get("transcoder") else SAE
    sae = cls(d_in=D_IN, d_sae=D_SAE, hook_name=hook, seed=seed, **fields)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_dec.mul_(0.5 + 1.5 * torch.rand(D_SAE, 1, generator=g))
        sae.b_enc.copy_(0.3 * torch.randn(D_SAE, generator=g))
        sae.b_dec.copy_(0.3 * torch.randn(sae.b_dec.shape, generator=g))
        if sae.cfg.kind == "jumprelu":
            sae.log_threshold.copy_((0.05 + 0.4 * torch.rand(D_SAE, generator=g)).log())
        if sae.cfg.kind == "batchtopk":
            sae.threshold.fill_(0.3)
        if sae.cfg.skip:
            sae.W_skip.copy_(torch.randn(sae.W_skip.shape, generator=g) * 0.2)
    return sae.eval()


def _same(a, b, x) -> None:
    with torch.no_grad():
        za, zb = a.encode(x), b.encode(x)
        torch.testing.assert_close(za, zb, rtol=1e-5, atol=1e-5)
        assert torch.equal(za != 0, zb != 0)
        torch.testing.assert_close(a.decode(za), b.decode(zb), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a(x), b(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", OURS)
@pytest.mark.parametrize("hook", ["blocks.2.resid_post", None])
def test_saved_by_tsi_loaded_by_saelens(case, hook, tmp_path):
    fields, cls = OURS[case]
    ours = _ours(fields, seed=len(case), hook=hook)
    ours.save(tmp_path / "s")
    theirs = sl.SAE.load_from_disk(tmp_path / "s")
    assert type(theirs).__name__ == cls
    assert theirs.cfg.metadata.hook_name == ("blocks.2.hook_resid_post" if hook else "")
    x = torch.randn(2, 3, D_IN, generator=torch.Generator().manual_seed(1)) * 2
    _same(ours, theirs, x)


@pytest.mark.parametrize("case", list(fixtures._cases()))
def test_saved_by_saelens_loaded_by_tsi_and_back(case, tmp_path):
    sae = fixtures._cases()[case]()
    fixtures._randomize(sae, seed=len(case))
    (sae.save_inference_model if hasattr(sae, "save_inference_model") else sae.save_model)(tmp_path / "a")
    theirs = sl.SAE.load_from_disk(tmp_path / "a")
    ours = tsi.sae.load(tmp_path / "a")
    x = torch.randn(4, D_IN, generator=torch.Generator().manual_seed(2)) * 2
    _same(ours, theirs, x)
    ours.save(tmp_path / "b")  # and back: SAELens reads what we wrote from its file
    _same(sl.SAE.load_from_disk(tmp_path / "b"), theirs, x)
