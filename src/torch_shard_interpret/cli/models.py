"""``tsi models``: what can be loaded here, and what is already cached."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

HELP = "list the models that can be loaded here and their cache status"
FOOTER = (
    "Also loadable: any local Hugging Face model directory (tsi.load('path/to/dir')) "
    "or a Hub id when online (tsi.load('org/name'))."
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("models", help=HELP, description=HELP + ".")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.set_defaults(run=run)


def _status(row: Any) -> str:
    if row.cached:
        return "cached"
    return "available" if row.available else "missing"


def run(args: argparse.Namespace) -> int:
    from ..loading import cache_root, list_models

    rows = list_models()
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        _print_plain(rows)
    else:
        table = Table(title=None, show_lines=False, expand=False)
        table.add_column("name", no_wrap=True, style="bold")
        table.add_column("status", no_wrap=True)
        table.add_column("description", overflow="fold")
        table.add_column("source", overflow="fold")
        for r in rows:
            table.add_row(r.name, _status(r), r.description, r.source)
        console = Console(file=sys.stdout, soft_wrap=False)
        console.print(table)
    print(f"cache: {cache_root()}  (set TSI_CACHE to move it)")
    print(FOOTER)
    return 0


def _print_plain(rows: list[Any]) -> None:
    header = ("name", "status", "description", "source")
    lines = [header] + [(r.name, _status(r), r.description, r.source) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line[:3], widths, strict=True)) + "  " + line[3])
