"""``tsi bench [--quick] [--tools ...] [--out DIR]``: score every tool against models whose insides are known.

Prints the scoreboard, and with ``--out`` writes ``DIR/scoreboard.json`` and ``DIR/scoreboard.html``. A
non-empty ``--out`` is refused unless ``--overwrite``. The exit status is 0 when every row passes, 1 if not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

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
    parser.add_argument("--out", metavar="DIR", help="write DIR/scoreboard.json and DIR/scoreboard.html")
    parser.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .._io import atomic_write, writable_dir_problem
    from ..core import InputError

    out = Path(args.out) if args.out else None
    if out is not None:
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {str(out)!r} is a file; give a directory")
        if out.is_dir() and any(out.iterdir()) and not args.overwrite:
            raise InputError(
                f"--out {str(out)!r} is not empty; choose an empty directory or pass --overwrite"
            )
        problem = writable_dir_problem(out)
        if problem is not None:
            raise InputError(f"cannot write to {str(out)!r}: {str(problem.path)!r} is not writable")
    from ..bench import run as bench_run

    board = bench_run("quick" if args.quick else "full", tools=args.tools, progress=not args.no_progress)
    print(board.summary())
    if out is not None:
        board.save(out / "scoreboard.json")
        atomic_write(out / "scoreboard.html", board.to_html(), mkdir=True)
        print(f"json: {(out / 'scoreboard.json').resolve()}\nhtml: {(out / 'scoreboard.html').resolve()}")
    sys.stdout.flush()
    return 0 if board.passed else 1
