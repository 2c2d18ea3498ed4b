"""``tsi harvest``: record sites of a model over a text file into an activation store on disk."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._bounds import float_in, int_in
from ._common import add_model, add_progress, load_model, progress_for
from ._fields import add_fields, field_values
from ._output import add_output, output_dir

if TYPE_CHECKING:
    from ..core._model import Model

HELP = "record activations of sites over a text corpus into a sharded on-disk store (for SAEs, probes)"
BOUNDS = {
    "context": int_in(1, 1_000_000), "batch_size": int_in(1, 65_536), "shard_rows": int_in(1, 10**9),
    "dist_timeout": float_in(0, 7 * 86_400, open_lo=True),
}  # fmt: skip


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "harvest",
        help=HELP,
        description=HELP + ". Texts are packed into rows of --context tokens (EOS between documents; "
        "the last incomplete row is dropped). Each shard is written atomically; --resume continues a "
        "stopped harvest. Under torchrun every rank writes its own shards into the same --out.",
    )
    add_model(parser)
    parser.add_argument(
        "--data", required=True, metavar="FILE",
        help=".txt (one document per line), .jsonl (field 'text') or .parquet (column 'text')",
    )  # fmt: skip
    parser.add_argument(
        "--sites", required=True,
        help="comma-separated site names or globs, e.g. 'blocks.6.resid_post' or 'blocks.*.resid_post'",
    )  # fmt: skip
    add_output(parser, "--out", required=True, metavar="DIR", help="the store folder (created if missing)")
    from ..store._config import DTYPE_NAMES, HarvestConfig

    add_fields(parser, HarvestConfig, bounds=BOUNDS, choices={"dtype": DTYPE_NAMES}, title="HarvestConfig")
    parser.add_argument("--resume", action="store_true", help="continue a stopped harvest into --out")
    add_progress(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..core import InputError
    from ..store import HarvestConfig, harvest

    if args.resume and args.overwrite:
        raise InputError("give --resume or --overwrite, not both")
    out = _check_out(args)
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    if not sites:
        raise InputError("--sites is empty; give e.g. --sites blocks.6.resid_post")
    config = HarvestConfig(**field_values(args, HarvestConfig))
    model = load_model(args.model)
    _check_context(model, config.context, args.model)
    t0 = time.perf_counter()
    with out.writing() as folder:
        store = harvest(
            model, args.data, sites=sites, path=folder, resume=args.resume,
            progress=progress_for(args), **config.harvest_kwargs(),
        )  # fmt: skip
    dt = time.perf_counter() - t0
    size = sum(s["bytes"] for s in store.shards)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return 0
    print(
        f"wrote {len(store):,} tokens x {len(store.sites)} site(s) ({size / 1e6:,.1f} MB in {len(store.shards)} "
        f"shards) to {out.path} in {dt:.1f} s ({len(store) / max(dt, 1e-9):,.0f} tokens/s)"
    )
    return 0


def _check_context(model: Model, context: int | None, name: str) -> None:
    """Refuse a --context longer than the model reads, naming its real limit and where it comes from."""
    from ..core import InputError

    limits = []
    if model.cfg.n_ctx:
        hf = getattr(getattr(model, "module", None), "config", None)
        key = next(
            (k for k in ("max_position_embeddings", "n_positions", "n_ctx") if getattr(hf, k, None)), None
        )
        limits.append((int(model.cfg.n_ctx), f"its config's {key}" if key else "its position embeddings"))
    tok_max = getattr(getattr(model, "tokenizer", None), "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 10**7:  # tokenizers without a limit say 1e30
        limits.append((tok_max, "its tokenizer's model_max_length"))
    if context is None or not limits:
        return
    limit, source = min(limits)
    if context > limit:
        raise InputError(
            f"--context {context} is longer than {name} reads: at most {limit} tokens ({source}); "
            f"give --context {limit} or less"
        )


def _check_out(args: argparse.Namespace) -> Any:
    """The output rule (cli/_output.py); ``--resume`` continues the store in ``--out`` in place, and a new
    harvest writes a new or empty folder in place too, so that a stopped one can be resumed."""
    from ..core import InputError
    from ..store._manifest import MANIFEST

    p = Path(args.out).expanduser()
    if not args.resume and (p / MANIFEST).is_file():
        raise InputError(
            f"--out {args.out!r} already holds an activation store; pass --resume to continue it, or choose a "
            "new folder (tsi never replaces a store, even with --overwrite)"
        )
    return output_dir(args, "out", in_place=args.resume, stage_new=False)
