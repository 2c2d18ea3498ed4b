"""``tsi bench [--quick] [--tools ...] [--out DIR]``: score every tool against models whose insides are known.

Prints the scoreboard, and with ``--out`` writes ``DIR/scoreboard.json`` and ``DIR/scoreboard.html``. A
non-empty ``--out`` is refused unless ``--overwrite``. The exit status is 0 when every row passes, 1 if not.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import add_progress, progress_for
from ._output import add_output, output_dir

HELP = "score every tool against ground-truth models (the scoreboard)"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("bench", help=HELP, description=HELP + ".")
    parser.add_argument("--quick", action="store_true", help="the quick suite (minutes on 2 CPU cores)")
    parser.add_argument(
        "--tools",
        nargs="+",
        metavar="TOOL",
        help="only these tools (e.g. sae.topk attribution.ig; 'sae' = sae.*)",
    )
    add_output(parser, "--out", metavar="DIR", help="write DIR/scoreboard.json and DIR/scoreboard.html")
    add_progress(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .._io import atomic_write

    out = output_dir(args, "out") if args.out else None
    from ..bench import run as bench_run

    board = bench_run("quick" if args.quick else "full", tools=args.tools, progress=progress_for(args))
    print(board.summary())
    if out is not None:
        with out.writing() as folder:
            board.save(folder / "scoreboard.json")
            atomic_write(folder / "scoreboard.html", board.to_html())
        final = out.path.resolve()
        print(f"json: {final / 'scoreboard.json'}\nhtml: {final / 'scoreboard.html'}")
    sys.stdout.flush()
    return 0 if board.passed else 1
