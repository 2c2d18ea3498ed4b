"""``tsi patch``: activation (or attribution) patching of a clean/corrupt prompt pair, as an HTML heatmap."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._io import atomic_write, slug
from ._bounds import int_in
from ._common import add_model, add_progress, api_default, load_model, progress_for
from ._output import add_output, output_dir

HELP = "patch clean activations into a corrupt prompt, site by site and position by position (HTML heatmap)"
FILE_NAME = "patching.html"


def register(subparsers: Any) -> None:
    from ..patching import activation_patching

    sites = api_default(activation_patching, "sites")
    parser = subparsers.add_parser(
        "patch",
        help=HELP,
        description=HELP
        + f". The metric is logit(TARGET) - logit(BASELINE) at the last position; the heatmap is "
        f"written atomically to DIR/{FILE_NAME}.",
    )
    add_model(parser)
    parser.add_argument("--clean", required=True, metavar="TEXT", help="the prompt with the behaviour")
    parser.add_argument(
        "--corrupt",
        required=True,
        metavar="TEXT",
        help="the same prompt with the key tokens changed (same length)",
    )
    parser.add_argument(
        "--target", required=True, metavar="TOKEN", help="the clean answer, one token, e.g. ' Mary'"
    )
    parser.add_argument("--baseline", required=True, metavar="TOKEN", help="the corrupt answer, e.g. ' John'")
    parser.add_argument("--sites", default=sites, help=f"site glob to patch (default {sites})")
    parser.add_argument(
        "--method", choices=("exact", "attribution"), default="exact",
        help="exact activation patching (batched forwards) or attribution patching (2 forwards + 1 backward)",
    )  # fmt: skip
    parser.add_argument(
        "--direction", choices=("denoise", "noise"), default=api_default(activation_patching, "direction"),
        help="denoise: run corrupt, patch clean in (default); noise: run clean, patch corrupt in",
    )  # fmt: skip
    parser.add_argument(
        "--heads", nargs="?", const="all", default=None, metavar="grid",
        help="one cell per attention head, patched at all positions (sites with heads: attn.q/k/v/z/pattern); "
        "--heads grid: one cell per position and head (a heatmap per site)",
    )  # fmt: skip
    parser.add_argument(
        "--batch-size",
        type=int_in(1, 4096),
        metavar="N",
        help="patched runs per forward (default: by memory; 1-4096)",
    )
    parser.add_argument(
        "--top",
        type=int_in(1, 1000),
        default=10,
        metavar="N",
        help="cells in the terminal table (default 10; 1-1000)",
    )
    add_output(
        parser, "--out", metavar="DIR", help="output directory (default reports/patch-<slug-of-clean>)"
    )
    add_progress(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..core import InputError
    from ..patching import activation_patching, attribution_patching

    for name in ("clean", "corrupt", "target", "baseline"):
        if not getattr(args, name):
            raise InputError(f"--{name} is empty; give the text")
    if args.top < 0:
        raise InputError(f"--top must be 0 or more, not {args.top}")
    if args.heads not in (None, "all", "grid"):
        raise InputError(f"--heads takes no value or 'grid', not {args.heads!r}")
    heads = {None: False, "all": True, "grid": "grid"}[args.heads]
    if heads == "grid" and args.method != "exact":
        raise InputError("--heads grid applies to --method exact only; use --heads with --method attribution")
    default = Path("reports") / f"patch-{_slug(args.clean)}"
    out = output_dir(args, "out", path=args.out or default)  # before the slow part; nothing is created yet

    model = load_model(args.model)
    if any(part in args.sites for part in ("attn.pattern", "attn.scores")):
        model.set_attention("eager")  # patterns and scores exist under eager attention only
    target, baseline = model.token_id(args.target), model.token_id(args.baseline)

    def metric(logits):
        return logits[:, -1, target] - logits[:, -1, baseline]

    if args.method == "exact":
        result = activation_patching(
            model, args.clean, args.corrupt, metric, sites=args.sites, heads=heads,
            direction=args.direction, batch_size=args.batch_size, progress=progress_for(args),
        )  # fmt: skip
    else:
        if args.batch_size is not None:
            raise InputError("--batch-size applies to --method exact only (attribution runs 2 forwards)")
        result = attribution_patching(
            model,
            args.clean,
            args.corrupt,
            metric,
            sites=args.sites,
            heads=heads is True,
            direction=args.direction,
        )
    title = f"{'Activation' if args.method == 'exact' else 'Attribution'} patching · {args.model}"
    with out.writing() as folder:
        _write(result.to_html(title), folder / FILE_NAME)
    _summary(result, args, out.path / FILE_NAME)
    return 0


def _slug(text: str, limit: int = 40) -> str:
    return slug(text, limit, "prompt")


def _write(text: str, final: Path) -> Path:
    """Write ``final`` atomically: a temporary file in the same directory, then ``os.replace``."""
    return atomic_write(final.expanduser(), text, prefix=".patching-", suffix=".html.tmp", mkdir=True)


def _meaning(direction: str) -> str:
    """What an effect of 1 and of 0 mean in this direction (the effect is normalised by clean - corrupt)."""
    if direction == "noise":
        return "1 = the clean behaviour fully destroyed, 0 = unchanged"
    return "1 = the clean behaviour fully restored, 0 = still corrupt"


def _summary(result: Any, args: argparse.Namespace, path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(file=sys.stdout, soft_wrap=True, highlight=False)
    what = "activation patching" if result.method == "activation" else "attribution patching (estimate)"
    out.print(f"[bold]tsi patch[/] · {args.model} · {what} · {result.direction}")
    out.print(f"metric: logit({args.target!r}) - logit({args.baseline!r}) at the last position")
    out.print(f"clean {result.clean_metric:+.3f} · corrupt {result.corrupt_metric:+.3f}")
    if args.top:
        table = Table(
            title=f"top {args.top} cells by |effect| ({_meaning(result.direction)})", title_justify="left"
        )
        table.add_column("site")
        column = "position · head" if result.is_grid else "head" if result.heads is not None else "position"
        table.add_column(column)
        table.add_column("effect", justify="right")
        table.add_column("raw", justify="right")
        for site, col, eff, raw in result.top(args.top):
            table.add_row(site, col, f"{eff:+.3f}", f"{raw:+.3f}")
        out.print(table)
    print(f"heatmap: {path.resolve()}")
