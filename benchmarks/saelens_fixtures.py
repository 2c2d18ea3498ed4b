"""Make the SAELens fixtures of ``tests/sae/data/saelens/`` with SAELens itself (benchmark environment only).

    /work/bvenv/bin/python benchmarks/saelens_fixtures.py [--out tests/sae/data/saelens]

For each architecture and option a tiny SAE (d_in 8, d_sae 16, transcoders d_out 12) gets seeded random
weights (decoder rows of uneven norms, non-zero biases, positive thresholds), is saved by SAELens
(``save_model``, or ``save_inference_model`` for the training-only BatchTopK), loaded back by SAELens
(``SAE.load_from_disk``) and run on fixed inputs. ``expected.safetensors`` in each folder holds the inputs
``x`` [2, 3, d_in] and SAELens's ``encode(x)``, ``decode(encode(x))`` and ``forward(x)``. The tests compare
ours with these numbers; nothing here runs in ``make test``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch

D_IN, D_SAE, D_OUT, K = 8, 16, 12, 4
HOOK, HOOK_OUT = "blocks.0.hook_resid_post", "blocks.0.hook_mlp_out"


def _randomize(sae: Any, seed: int) -> None:
    """Seeded weights with structure: decoder rows of norms 0.5-2, biases, thresholds that let some fire."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name == "W_dec":
                w = torch.randn(p.shape, generator=g)
                w = w / w.norm(dim=-1, keepdim=True) * (0.5 + 1.5 * torch.rand(p.shape[0], 1, generator=g))
                p.copy_(w)
            elif name in ("threshold", "log_threshold"):
                t = 0.05 + 0.4 * torch.rand(p.shape, generator=g)
                p.copy_(t.log() if name == "log_threshold" else t)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.3 if name.startswith("b_") else 1.0))
        if hasattr(sae, "topk_threshold"):
            sae.topk_threshold.fill_(0.4)


def _cases() -> dict[str, Any]:
    import sae_lens as sl

    meta = {"hook_name": HOOK, "model_name": "tiny"}
    tmeta = {"hook_name": HOOK, "hook_name_out": HOOK_OUT, "model_name": "tiny"}

    def cfg(cls: Any, m: dict[str, Any] = meta, **kw: Any) -> Any:
        c = cls(d_in=D_IN, d_sae=D_SAE, **kw)
        for key, v in m.items():
            c.metadata[key] = v
        return c

    return {
        "standard": lambda: sl.StandardSAE(cfg(sl.StandardSAEConfig)),
        "standard_no_b_dec_in": lambda: sl.StandardSAE(cfg(sl.StandardSAEConfig, apply_b_dec_to_input=False)),
        "topk": lambda: sl.TopKSAE(cfg(sl.TopKSAEConfig, k=K)),
        "topk_rescaled": lambda: sl.TopKSAE(cfg(sl.TopKSAEConfig, k=K, rescale_acts_by_decoder_norm=True)),
        "abstopk": lambda: sl.AbsTopKSAE(cfg(sl.AbsTopKSAEConfig, k=K)),
        "abstopk_rescaled": lambda: sl.AbsTopKSAE(
            cfg(sl.AbsTopKSAEConfig, k=K, rescale_acts_by_decoder_norm=True)
        ),
        "jumprelu": lambda: sl.JumpReLUSAE(cfg(sl.JumpReLUSAEConfig)),
        "transcoder": lambda: sl.Transcoder(
            cfg(sl.TranscoderConfig, tmeta, d_out=D_OUT, apply_b_dec_to_input=False)
        ),
        "skip_transcoder": lambda: sl.SkipTranscoder(
            cfg(sl.SkipTranscoderConfig, tmeta, d_out=D_OUT, apply_b_dec_to_input=False)
        ),
        "jumprelu_transcoder": lambda: sl.JumpReLUTranscoder(
            cfg(sl.JumpReLUTranscoderConfig, tmeta, d_out=D_OUT, apply_b_dec_to_input=False)
        ),
        "jumprelu_skip_transcoder": lambda: sl.JumpReLUSkipTranscoder(
            cfg(sl.JumpReLUSkipTranscoderConfig, tmeta, d_out=D_OUT, apply_b_dec_to_input=False)
        ),
        # training-only: saved for inference as JumpReLU, decoder norms folded (rescale defaults to True)
        "batchtopk_inference": lambda: sl.BatchTopKTrainingSAE(cfg(sl.BatchTopKTrainingSAEConfig, k=K)),
    }


def make(out: Path) -> dict[str, int]:
    import sae_lens as sl
    from safetensors.torch import save_file

    sizes = {}
    for i, (name, build) in enumerate(_cases().items()):
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        sae = build()
        _randomize(sae, seed=100 + i)
        if hasattr(sae, "save_inference_model"):
            sae.save_inference_model(folder)
        else:
            sae.save_model(folder)
        back = sl.SAE.load_from_disk(folder)
        x = torch.randn(2, 3, D_IN, generator=torch.Generator().manual_seed(7 + i)) * 2
        with torch.no_grad():
            z = back.encode(x)
            expected = {"x": x, "encode": z, "decode": back.decode(z), "forward": back(x)}
        save_file({k: v.contiguous() for k, v in expected.items()}, str(folder / "expected.safetensors"))
        info = {"sae_lens": sl.__version__, "class": type(back).__name__, "nonzero": int((z != 0).sum())}
        (folder / "made_by.json").write_text(json.dumps(info, indent=1) + "\n")
        sizes[name] = sum(f.stat().st_size for f in folder.iterdir())
    return sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "tests/sae/data/saelens")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    sizes = make(args.out)
    for name, n in sizes.items():
        print(f"{name:28s} {n:6d} bytes")
    print(f"total {sum(sizes.values())} bytes in {args.out}")


if __name__ == "__main__":
    main()
