"""``tsi report "PROMPT"``: one self-contained HTML report of a prompt, plus a summary in the terminal."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._bounds import int_in
from ._common import add_model, add_progress, api_default, load_model, progress_for
from ._output import add_output, output_dir

HELP = "analyse one prompt and write a self-contained HTML report (lens, DLA, attention, saliency)"


def register(subparsers: Any) -> None:
    from ..report._build import build_report

    parser = subparsers.add_parser(
        "report",
        help=HELP,
        description=HELP + ". The report is written atomically to DIR/report.html.",
    )
    parser.add_argument(
        "prompt", metavar="PROMPT", help="the text to analyse; the report explains its next token"
    )
    add_model(parser)
    add_output(parser, "--out", metavar="DIR", help="output directory (default reports/<slug-of-prompt>)")
    parser.add_argument(
        "--target", metavar="TOKEN", help="one token to explain, e.g. ' Mary' (default: the top prediction)"
    )
    parser.add_argument(
        "--baseline", metavar="TOKEN", help="explain logit(target) - logit(baseline) instead, e.g. ' John'"
    )
    parser.add_argument(
        "--top-heads",
        type=int_in(0, 64),
        default=api_default(build_report, "top_heads"),
        metavar="N",
        help="attention patterns of the N heads with the largest |DLA| (default %(default)s; 0-64)",
    )
    add_progress(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..report._build import build_report, check_prompt, default_out_dir, write_report
    from ..report._html import render

    prompt = check_prompt(args.prompt)
    if args.top_heads < 0:
        from ..core import InputError

        raise InputError(f"--top-heads must be 0 or more, not {args.top_heads}")
    out = output_dir(args, "out", path=args.out or default_out_dir(prompt))  # before the slow part

    err = Console(stderr=True)
    with _progress(err, progress_for(args)) as step:
        with step(f"Loading model {args.model}"):
            model = load_model(args.model)
        data = build_report(
            model, prompt, target=args.target, baseline=args.baseline, top_heads=args.top_heads,
            model_name=args.model, step=step,
        )  # fmt: skip
        with step("Rendering HTML"):
            html = render(data)
        with out.writing() as folder:
            write_report(html, folder)
    _summary(data, out.path / "report.html")
    return 0


@contextmanager
def _progress(console: Any, enabled: bool) -> Iterator[Any]:
    """A ``step(name)`` context manager showing a spinner per stage (on a terminal only, so that errors
    and pipes stay clean; never with ``--no-progress``)."""
    if not enabled or not console.is_terminal:

        @contextmanager
        def quiet(_: str) -> Iterator[None]:
            yield

        yield quiet
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(finished_text="[green]✓"), TextColumn("{task.description}"), TimeElapsedColumn(),
        console=console, transient=False,
    ) as progress:  # fmt: skip

        @contextmanager
        def step(name: str) -> Iterator[None]:
            task = progress.add_task(name, total=1)
            try:
                yield
            except BaseException:
                progress.update(task, description=f"[red]{name} (failed)")
                raise
            progress.update(task, completed=1)

        yield step


def _summary(data: Any, path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from .._render import show_token

    out = Console(file=sys.stdout, soft_wrap=True, highlight=False)
    q = lambda t: repr(t)  # noqa: E731 - tokens with their spaces visible

    out.print(f"[bold]tsi report[/] · {data.model_name} · {len(data.tokens)} tokens")
    out.print(f"prompt: {data.prompt!r}")
    table = Table(title="next-token prediction (last position)", title_justify="left", show_edge=False)
    table.add_column("#", justify="right")
    table.add_column("token")
    table.add_column("prob", justify="right")
    table.add_column("logit", justify="right")
    for k, (tok, _, p, logit) in enumerate(data.top[:5]):
        table.add_row(str(k + 1), q(tok), f"{p:.3f}", f"{logit:.2f}")
    out.print(table)

    lens = data.lens
    probs = lens.probs[:, -1, data.target]  # [n_layers]
    ranks = (lens.probs[:, -1] > probs.unsqueeze(-1)).sum(-1)  # [n_layers]
    first = next((i for i in range(len(ranks)) if bool((ranks[i:] == 0).all())), None)
    where = (
        f"is the lens's top token from layer {first} on"
        if first is not None
        else "is never the lens's top token"
    )
    out.print(f"logit lens: {q(data.target_str)} {where} (final p = {float(probs[-1]):.3f})")

    dla = data.dla
    out.print(
        f"direct logit attribution of {dla.label}: total {dla.total:+.3f} = "
        f"components {sum(dla.components.values()):+.3f} + remainder {dla.remainder:+.2g}"
    )
    comps = ", ".join(f"{name} {v:+.2f}" for name, v in dla.top_components(5))
    heads = ", ".join(f"L{layer}H{h} {v:+.2f}" for layer, h, v in dla.top_heads(5))
    out.print(f"  top components: {comps}")
    out.print(f"  top heads: {heads}")
    order = data.saliency.abs().argsort(descending=True)[:3].tolist()
    sal = ", ".join(f"{show_token(data.str_tokens[i])}·{i} {float(data.saliency[i]):+.2f}" for i in order)
    out.print(f"saliency (grad × input): {sal}")
    for note in data.notes:
        out.print(f"[dim]note: {note}[/]")
    print(f"report: {path.resolve()}")
