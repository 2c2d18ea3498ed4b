"""``tsi train-sae``: train a sparse autoencoder on stored activations and save it (SAELens layout)."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "train a sparse autoencoder (topk, batchtopk, relu, jumprelu) on stored activations"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("train-sae", help=HELP, description=HELP + ".")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--store", metavar="DIR", help="activation store made by `tsi harvest`")
    src.add_argument(
        "--acts", metavar="FILE", help="or a tensor file (.pt or .safetensors) of [n, d_in] rows"
    )
    parser.add_argument("--site", help="site to train on (default: the store's only site)")
    parser.add_argument("--kind", default="topk", choices=("topk", "batchtopk", "relu", "jumprelu"))
    parser.add_argument(
        "--d-sae", type=int, default=4096, metavar="N", help="number of latents (default 4096)"
    )
    parser.add_argument(
        "--k", type=int, default=32, help="active latents per token, topk/batchtopk (default 32)"
    )
    parser.add_argument(
        "--l1-coefficient", type=float, default=None, help="L1 weight for relu (default: SAEConfig's, 2)"
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder to write cfg.json + sae_weights.safetensors"
    )
    parser.add_argument(
        "--steps", type=int, metavar="N", help="optimizer steps (default: one epoch of a store)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=4096, metavar="N", help="tokens per step (default 4096)"
    )
    parser.add_argument("--lr", type=float, help="Adam learning rate (default 2e-4 / sqrt(d_sae / 16384))")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-dir", metavar="DIR", help="write resumable checkpoints here")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..core import InputError
    from ..sae import TrainConfig, train

    if not args.store and not args.acts:
        raise InputError("give --store DIR (an activation store) or --acts FILE (an [n, d_in] tensor)")
    for name in ("d_sae", "k", "batch_size"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}")
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps must be at least 1, not {args.steps}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {args.out!r} is a file; give a folder such as sae/")
    if not out.parent.exists():
        raise InputError(
            f"--out {args.out!r}: the folder {str(out.parent)!r} does not exist; create it first"
        )
    if args.resume and not args.checkpoint_dir:
        raise InputError("--resume needs --checkpoint-dir")
    source = _open_store(args.store) if args.store else _load_acts(args.acts)
    sae_fields = {"kind": args.kind, "d_sae": args.d_sae}
    if args.kind in ("topk", "batchtopk"):
        sae_fields["k"] = args.k
    if args.l1_coefficient is not None:
        sae_fields["l1_coefficient"] = args.l1_coefficient
    sae = train(
        source,
        sae_fields,
        TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed),
        site=args.site,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
        progress=not args.no_progress,
    )
    sae.save(out)
    print(f"saved {sae.cfg.kind} SAE ({sae.cfg.d_in} -> {sae.cfg.d_sae} latents) to {out}")
    return 0


def _open_store(path: str) -> Any:
    from pathlib import Path

    from ..core import InputError

    if not Path(path).is_dir():
        raise InputError(f"--store {path!r} is not a folder; make one with `tsi harvest` first")
    try:
        from ..store import open as open_store
    except ImportError:
        raise InputError(
            "activation stores are not available in this installation; use --acts FILE"
        ) from None
    return open_store(path)


def _load_acts(path: str) -> Any:
    from pathlib import Path

    import torch

    from ..core import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"--acts {path!r} does not exist; give a .pt or .safetensors file of [n, d_in] rows")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = list(load_file(str(p)).values())
            t = tensors[0] if len(tensors) == 1 else None
        else:  # weights_only: plain tensors only, nothing in the file can run code
            import warnings

            with warnings.catch_warnings():  # torch warns about the pickle protocol of files it then refuses
                warnings.simplefilter("ignore")
                t = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch and safetensors raise many types for a bad file
        raise InputError(
            f"--acts {path!r} could not be read as a tensor file ({type(exc).__name__}); give a .safetensors "
            "file or a .pt file saved with torch.save(tensor)"
        ) from None
    if not torch.is_tensor(t) or t.ndim != 2:
        raise InputError(f"--acts {path!r} must hold one 2-D tensor [n, d_in]")
    return t.float()
