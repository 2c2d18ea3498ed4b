"""``tsi serve``: start the local web app (starlette + uvicorn) for looking inside a model."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import PRELOADED, load_model

HELP = "start a local web app: predictions, logit lens, attention, DLA, steering, patching, SAE features"
DEFAULT_MODEL = "smollm2-135m"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

# Already wrapped models by name, used instead of loading (tests and notebooks), as in ``tsi report``.
_PRELOADED = PRELOADED  # the registry shared by all subcommands (cli/_common.py)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help=HELP,
        description=HELP + ". It binds 127.0.0.1 unless --allow-remote is given; see docs/serve.md.",
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"model name or path (default {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--store",
        action="append",
        default=[],
        metavar="DIR",
        help="activation store(s): their tokens are the SAE browser's corpus",
    )
    parser.add_argument(
        "--sae",
        action="append",
        default=[],
        metavar="DIR",
        help="SAE directory in SAELens layout (repeatable)",
    )
    parser.add_argument(
        "--vectors", action="append", default=[], metavar="PATH",
        help="steering vector file or folder of .safetensors files (repeatable)",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    parser.add_argument(
        "--allow-remote", action="store_true",
        help="allow binding an address other than localhost (anyone who can reach it can run the model)",
    )  # fmt: skip
    parser.add_argument(
        "--no-attention", action="store_true",
        help="do not switch the model to eager attention (the attention tab is then off)",
    )  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .main import UsageError

    if args.host not in LOCAL_HOSTS and not args.allow_remote:
        raise UsageError(
            f"--host {args.host} would expose the model to the network; add --allow-remote to do that on purpose"
        )
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, not {args.port}")
    try:
        import uvicorn

        from ..serve import create_app
    except ImportError as exc:
        raise UsageError(
            f"tsi serve needs the web extra ({exc.name} is missing): pip install 'torch-shard-interpret[web]'"
        ) from None

    err = sys.stderr
    print(f"tsi serve: loading model {args.model}...", file=err, flush=True)
    model = load_model(args.model)
    app = create_app(
        model,
        stores=args.store,
        saes=args.sae,
        vectors=args.vectors,
        model_name=args.model,
        attention=not args.no_attention,
        allowed_hosts=None if args.allow_remote else [*LOCAL_HOSTS, "[::1]"],
    )
    note = app.state.tsi.attention_note
    if note:
        print(f"tsi serve: {note}", file=err)
    if args.host not in LOCAL_HOSTS:
        print(
            f"tsi serve: WARNING: listening on {args.host}: anyone who can reach this port can run the model "
            "and read the SAEs and vectors it was started with. There is no authentication.",
            file=err,
        )
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"tsi serve: open http://{host}:{args.port}/  (Ctrl+C to stop)", file=err, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
