"""``tsi serve``: start the local web app (starlette + uvicorn) for looking inside a model."""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from typing import Any

from ..vision._zoo import DEFAULT as DEFAULT_VISION_MODEL
from ._common import add_model, load_model

HELP = (
    "start a local web app: predictions, logit lens, attention, DLA, steering, patching, SAE features, circuits, "
    "image attributions"
)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help=HELP,
        description=HELP + ". It binds 127.0.0.1 unless --allow-remote is given; see docs/serve.md.",
    )
    add_model(parser)
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
        help="allow binding an address other than localhost; a random token printed at start-up is then required",
    )  # fmt: skip
    parser.add_argument(
        "--allowed-host", action="append", default=[], metavar="NAME",
        help="a Host name the server answers to besides 127.0.0.1/localhost (repeatable; exact match)",
    )  # fmt: skip
    parser.add_argument(
        "--max-cost", type=int, default=None, metavar="N",
        help="the largest cost of one request, sites x positions x tokens (default: the server's own cap; 1-10^12)",
    )  # fmt: skip
    parser.add_argument(
        "--max-jobs", type=int, default=None, metavar="N",
        help="background jobs queued or running at once; more get 429 (default: the server's own limit; 1-1000)",
    )  # fmt: skip
    parser.add_argument(
        "--vision-model", default=DEFAULT_VISION_MODEL, metavar="NAME",
        help="the Image tab's model: an embedded vision model (default %(default)s, loaded on first use) or 'none'",
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
    if args.max_jobs is not None and not 1 <= args.max_jobs <= 1000:
        raise UsageError(f"--max-jobs must be between 1 and 1000, not {args.max_jobs}")
    if args.max_cost is not None and not 1 <= args.max_cost <= 10**12:
        raise UsageError(f"--max-cost must be between 1 and 1000000000000, not {args.max_cost}")
    for name in args.allowed_host:
        if not name or any(c in name for c in "/ @?#"):
            raise UsageError(f"--allowed-host takes a bare host name such as 'box.example.org', not {name!r}")
    try:
        import uvicorn

        from ..serve import create_app
    except ImportError as exc:
        raise UsageError(
            f"tsi serve needs the web extra ({exc.name} is missing): pip install 'torch-shard-interpret[web]'"
        ) from None

    from ..vision._zoo import NAMES as VISION_MODELS

    if args.vision_model != "none" and args.vision_model not in VISION_MODELS:
        raise UsageError(
            f"--vision-model must be one of {', '.join(VISION_MODELS)} or 'none', not {args.vision_model!r}"
        )
    err = sys.stderr
    print(f"tsi serve: loading model {args.model}...", file=err, flush=True)
    model = load_model(args.model)
    allowed = [*LOCAL_HOSTS, *args.allowed_host]
    if args.host not in ("0.0.0.0", "::"):
        allowed.append(args.host)
    token = secrets.token_urlsafe(24) if args.allow_remote else None
    app = create_app(
        model,
        stores=args.store,
        saes=args.sae,
        vectors=args.vectors,
        model_name=args.model,
        attention=not args.no_attention,
        allowed_hosts=allowed,
        **({} if args.max_cost is None else {"max_cost": args.max_cost}),
        **({} if args.max_jobs is None else {"max_jobs": args.max_jobs}),
        token=token,
        vision_model=None if args.vision_model == "none" else args.vision_model,
    )
    note = app.state.tsi.attention_note
    if note:
        print(f"tsi serve: {note}", file=err)
    if args.host not in LOCAL_HOSTS:
        print(
            f"tsi serve: WARNING: listening on {args.host}: anyone who can reach this port can run the model "
            "with the token below. It answers only to the Host names "
            f"{', '.join(sorted(set(allowed)))} (add more with --allowed-host).",
            file=err,
        )
    host = f"[{args.host}]" if ":" in args.host else args.host
    query = f"?token={token}" if token else ""
    print(f"tsi serve: open http://{host}:{args.port}/{query}  (Ctrl+C to stop)", file=err, flush=True)
    # log_config=None: uvicorn's default dictConfig closes every logging handler in the process (a library
    # such as absl then closes the stream it holds); serve_until_interrupted sets up uvicorn's own logger.
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", log_config=None)
    serve_until_interrupted(app, config)
    return 0


def serve_until_interrupted(app: Any, config: Any) -> None:
    """Run uvicorn; on Ctrl-C (or SIGTERM) stop every request's work at its next forward, then exit."""
    import uvicorn

    jobs = app.state.jobs
    config.timeout_graceful_shutdown = 3
    log = logging.getLogger("uvicorn")
    if not log.handlers:  # uvicorn's warnings and errors go to stderr, without reconfiguring logging
        log.addHandler(logging.StreamHandler())

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            jobs.stopping.set()  # running forwards raise at their next call; queued jobs never start
            super().handle_exit(sig, frame)

    try:
        Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises the signal it handled, after its shutdown
        pass
