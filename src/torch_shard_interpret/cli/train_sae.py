"""``tsi train-sae``: train a sparse autoencoder on stored activations and save it (SAELens layout).

Its options are the fields of ``SAEConfig`` and ``TrainConfig`` (``sae/_config.py``), built by ``_fields``: the
defaults and help texts are the dataclasses' own.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from ._bounds import float_in, int_in
from ._common import add_progress, progress_for
from ._fields import add_fields, field_docs, field_values
from ._output import add_output, output_dir, output_state

HELP = "train a sparse autoencoder (topk, batchtopk, relu, jumprelu) on stored activations"
# SAEConfig fields that come from the data or the other options, not from an option of their own.
FROM_DATA = {
    "d_in": "the width of the activations read",
    "hook_name": "--site (or the store's only site)",
    "transcoder": "False: train-sae reconstructs one site (train transcoders with tsi.sae.train)",
    "d_out": "None (no transcoder)",
    "hook_name_out": "None (no transcoder)",
    "normalize_activations": "'none': training folds its normalisation into the weights",
    "extra": "empty",
}
DTYPES = ("float32", "bfloat16", "float16")
SAE_BOUNDS = {
    "d_sae": int_in(1, 2**24), "k": int_in(1, 2**16), "aux_k": int_in(1, 2**24),
    "l1_coefficient": float_in(0, 1e6), "l0_coefficient": float_in(0, 1e6), "aux_coefficient": float_in(0, 1e3),
    "jumprelu_bandwidth": float_in(0, 1e3, open_lo=True), "jumprelu_init_threshold": float_in(0, 1e3),
}  # fmt: skip
TRAIN_BOUNDS = {
    "steps": int_in(1, 10**8), "batch_size": int_in(1, 2**22), "lr": float_in(0, 1, open_lo=True),
    "warmup_steps": int_in(0, 10**8), "decay_fraction": float_in(0, 1), "seed": int_in(0, 2**32 - 1),
    "dead_after_tokens": int_in(1, 10**13), "resample_every": int_in(0, 10**8),
    "checkpoint_every": int_in(1, 10**8), "log_every": int_in(1, 10**8),
    "context": int_in(1, 2**20), "text_batch_size": int_in(1, 2**16), "buffer_batches": int_in(1, 2**12),
}  # fmt: skip


def register(subparsers: Any) -> None:
    from ..sae._config import KINDS, SAEConfig, TrainConfig
    from ..sae._train import DEFAULT_D_SAE

    docs = field_docs(SAEConfig)
    epilog = "SAEConfig fields set from the data:\n" + "\n".join(
        textwrap.fill(f"{name}: {docs.get(name, '').replace('``', '')} Here: {how}.", 100,
                      initial_indent="  ", subsequent_indent="    ")
        for name, how in FROM_DATA.items()
    )  # fmt: skip
    parser = subparsers.add_parser(
        "train-sae", help=HELP, description=HELP + ".", epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--store", metavar="DIR", help="activation store made by `tsi harvest`")
    src.add_argument(
        "--acts", metavar="FILE", help="or a tensor file (.pt or .safetensors) of [n, d_in] rows"
    )
    parser.add_argument("--site", help="site to train on (default: the store's only site)")
    add_output(
        parser,
        "--out",
        required=True,
        metavar="DIR",
        help="folder to write cfg.json + sae_weights.safetensors",
    )
    add_output(
        parser, "--checkpoint-dir", kind="state", metavar="DIR", help="write resumable checkpoints here"
    )
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    add_progress(parser)
    add_fields(parser, SAEConfig, exclude=FROM_DATA, bounds=SAE_BOUNDS, choices={"kind": KINDS, "dtype": DTYPES},
               defaults={"d_sae": DEFAULT_D_SAE}, title="SAEConfig: what the SAE is")  # fmt: skip
    add_fields(parser, TrainConfig, bounds=TRAIN_BOUNDS, title="TrainConfig: how it is trained")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..core import InputError
    from ..sae import SAEConfig, TrainConfig, train

    if not args.store and not args.acts:
        raise InputError("give --store DIR (an activation store) or --acts FILE (an [n, d_in] tensor)")
    if args.resume and not args.checkpoint_dir:
        raise InputError("--resume needs --checkpoint-dir")
    out = output_dir(args, "out")
    output_state(args, "checkpoint_dir")
    if args.d_sae is None:
        raise InputError("give the number of latents with --d-sae N")
    source = _open_store(args.store) if args.store else _load_acts(args.acts)
    site, d_in = _site_and_width(source, args.site)
    config = SAEConfig(d_in=d_in, hook_name=site, **field_values(args, SAEConfig, exclude=FROM_DATA))
    train_config = TrainConfig(**field_values(args, TrainConfig))
    sae = train(
        source, config, train_config, site=site, checkpoint_dir=args.checkpoint_dir,
        resume=args.resume, progress=progress_for(args),
    )  # fmt: skip
    with out.writing() as folder:
        sae.save(folder)
    print(f"saved {sae.cfg.kind} SAE ({sae.cfg.d_in} -> {sae.cfg.d_sae} latents) to {out.path}")
    return 0


def _site_and_width(source: Any, site: str | None) -> tuple[str | None, int]:
    """The site trained on and the width of its rows (a tensor: ``--site`` only labels it)."""
    from ..core import InputError

    if hasattr(source, "sites"):  # a store
        if site is None:
            if len(source.sites) != 1:
                raise InputError(
                    f"this store holds several sites ({', '.join(source.sites)}); choose one with --site"
                )
            site = source.sites[0]
        if site not in source.sites:
            raise InputError(f"the store holds no site {site!r}; it holds {', '.join(source.sites)}")
        return site, int(source.shape(site)[-1])
    return site, int(source.shape[1])


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
