"""``tsi probe``: fit linear probes on labelled texts and print accuracy and control per site."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from ._bounds import float_in, int_in, read_text
from ._common import add_model, add_progress, api_default, load_model, progress_for
from ._output import add_output, output_file

HELP = "fit linear probes on labelled texts (JSONL with 'text' and 'label') and print accuracy vs control per site"


def register(subparsers: Any) -> None:
    from ..probes import fit

    parser = subparsers.add_parser("probe", help=HELP, description=HELP + ".")
    add_model(parser)
    parser.add_argument(
        "--data", required=True, metavar="FILE", help='JSONL, one {"text": ..., "label": ...} object per line'
    )
    parser.add_argument(
        "--sites", default=api_default(fit, "sites"), help="site names or globs, comma-separated"
    )
    parser.add_argument(
        "--position",
        default=str(api_default(fit, "position")),
        help="token read in each text: an integer (-1: last) or 'mean'",
    )
    parser.add_argument(
        "--task", choices=("auto", "classification", "regression"), default=api_default(fit, "task")
    )
    parser.add_argument(
        "--val-fraction",
        type=float_in(0.0, 0.9, open_lo=True),
        default=api_default(fit, "val_fraction"),
        metavar="F",
        help="validation share (default %(default)s)",
    )
    parser.add_argument("--seed", type=int_in(0, 2**32 - 1), default=api_default(fit, "seed"))
    add_output(
        parser,
        "--html",
        kind="file",
        metavar="PATH",
        help="also write the summary table as HTML (atomically)",
    )
    add_progress(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..probes import fit
    from .steer import _position

    html = output_file(args, "html", suggestion="probes.html")
    texts, labels = read_jsonl(args.data)
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    model = load_model(args.model)
    results = fit(
        model, texts, labels, sites=sites, position=_position(args.position), task=args.task,
        val_fraction=args.val_fraction, seed=args.seed, progress=progress_for(args),
    )  # fmt: skip
    _print(results, len(texts))
    if html is not None:
        from .._io import atomic_write

        atomic_write(html, results.to_html())
        print(f"wrote {html}")
    return 0


def read_jsonl(path: str) -> tuple[list[str], list[Any]]:
    from ..core import InputError

    texts, labels = [], []
    for n, line in enumerate(read_text(path, "data file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path} line {n} is not valid JSON ({exc.msg}); write one object per line"
            ) from None
        if not isinstance(row, dict) or "text" not in row or "label" not in row:
            raise InputError(
                f'{path} line {n} needs "text" and "label" keys, e.g. {{"text": "...", "label": 1}}'
            )
        label = row["label"]
        if (
            isinstance(label, bool)
            or not isinstance(label, (int, float, str))
            or (isinstance(label, float) and not math.isfinite(label))
        ):
            raise InputError(
                f"{path} line {n}: label {json.dumps(label)} is not a class or a value; "
                "give a string, an integer or a finite number"
            )
        if not isinstance(row["text"], str) or not row["text"].strip():
            raise InputError(f'{path} line {n}: "text" must be a non-empty string')
        texts.append(row["text"])
        labels.append(label)
    if not texts:
        raise InputError(f"{path} holds no examples; give one JSON object per line")
    return texts, labels


def _print(results: Any, n: int) -> None:
    first = next(iter(results.values()))
    name = "accuracy" if first.task == "classification" else "R^2"
    title = f"{n} texts: {first.n_train} train / {first.n_val} validation; control = shuffled labels"
    if first.task == "classification":
        title += f"; chance {first.chance:.2f}"
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print(f"{'site':<28}{name:>10}{'control':>10}{'select.':>10}")
        for site, r in results.items():
            print(f"{site:<28}{r.score:>10.3f}{r.control_score:>10.3f}{r.selectivity:>10.3f}")
        return
    table = Table(title=title)
    table.add_column("site", style="bold")
    for col in (name, "control", "selectivity"):
        table.add_column(col, justify="right")
    best = max(results.values(), key=lambda r: r.selectivity).site
    for site, r in results.items():
        style = "green" if site == best else None
        table.add_row(site, f"{r.score:.3f}", f"{r.control_score:.3f}", f"{r.selectivity:.3f}", style=style)
    Console(file=sys.stdout, soft_wrap=False).print(table)
