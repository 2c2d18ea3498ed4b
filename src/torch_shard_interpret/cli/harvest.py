"""``tsi harvest``: record sites of a model over a text file into an activation store on disk."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ._common import PRELOADED, load_model

HELP = "record activations of sites over a text corpus into a sharded on-disk store (for SAEs, probes)"
DEFAULT_MODEL = "smollm2-135m"
_DTYPES = ("float32", "bfloat16", "float16")

# Already wrapped models by name, used instead of loading (for tests and notebooks), as in `tsi report`.
_PRELOADED = PRELOADED  # the registry shared by all subcommands (cli/_common.py)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "harvest",
        help=HELP,
        description=HELP + ". Texts are packed into rows of --context tokens (EOS between documents; "
        "the last incomplete row is dropped). Each shard is written atomically; --resume continues a "
        "stopped harvest. Under torchrun every rank writes its own shards into the same --out.",
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"model name or path (default {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--data", required=True, metavar="FILE",
        help=".txt (one document per line), .jsonl (field 'text') or .parquet (column 'text')",
    )  # fmt: skip
    parser.add_argument(
        "--sites", required=True,
        help="comma-separated site names or globs, e.g. 'blocks.6.resid_post' or 'blocks.*.resid_post'",
    )  # fmt: skip
    parser.add_argument("--out", required=True, metavar="DIR", help="the store folder (created if missing)")
    parser.add_argument("--context", type=int, default=128, metavar="N", help="tokens per row (default 128)")
    parser.add_argument(
        "--batch-size", type=int, default=32, metavar="N", help="rows per forward (default 32)"
    )
    parser.add_argument(
        "--shard-rows", type=int, default=None, metavar="N",
        help="rows (sequences) per shard file (default: about 256 MiB per shard)",
    )  # fmt: skip
    parser.add_argument("--dtype", choices=_DTYPES, default="float32", help="dtype on disk (default float32)")
    parser.add_argument("--resume", action="store_true", help="continue a stopped harvest into --out")
    parser.add_argument("--overwrite", action="store_true", help="replace a store already in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..core import InputError
    from ..store import harvest

    if args.context < 1 or args.batch_size < 1 or (args.shard_rows is not None and args.shard_rows < 1):
        raise InputError("--context, --batch-size and --shard-rows must be positive integers")
    if args.resume and args.overwrite:
        raise InputError("give --resume or --overwrite, not both")
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    if not sites:
        raise InputError("--sites is empty; give e.g. --sites blocks.6.resid_post")
    model = load_model(args.model)
    t0 = time.perf_counter()
    store = harvest(
        model, args.data, sites=sites, path=args.out, context=args.context, batch_size=args.batch_size,
        dtype=getattr(torch, args.dtype), shard_rows=args.shard_rows, resume=args.resume,
        progress=not args.no_progress and sys.stderr.isatty(), overwrite=args.overwrite,
    )  # fmt: skip
    dt = time.perf_counter() - t0
    size = sum(s["bytes"] for s in store.shards)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return 0
    print(
        f"wrote {len(store):,} tokens x {len(store.sites)} site(s) ({size / 1e6:,.1f} MB in {len(store.shards)} "
        f"shards) to {store.path} in {dt:.1f} s ({len(store) / max(dt, 1e-9):,.0f} tokens/s)"
    )
    return 0
