"""``tsi attribute "PROMPT"``: which components (DLA) or input tokens (saliency, integrated gradients) a
prediction comes from, as a terminal table and optionally an HTML file."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._io import atomic_write
from ._bounds import int_in
from ._common import add_model, api_default, load_model
from ._output import add_output, output_dir

HELP = "attribute a prediction to components (dla) or to input tokens (saliency, ig)"
METHODS = ("dla", "saliency", "ig")


def register(subparsers: Any) -> None:
    from ..attribution import integrated_gradients

    parser = subparsers.add_parser("attribute", help=HELP, description=HELP + ".")
    parser.add_argument("prompt", metavar="PROMPT", help="the text whose next-token prediction is explained")
    add_model(parser)
    parser.add_argument("--method", choices=METHODS, default="dla", help="dla (default), saliency or ig")
    parser.add_argument(
        "--target", metavar="TOKEN", help="one token, e.g. ' Paris' (default: the top prediction)"
    )
    parser.add_argument(
        "--baseline", metavar="TOKEN", help="dla/saliency: explain logit(target) - logit(this)"
    )
    parser.add_argument(
        "--steps", type=int_in(1, 4096), default=api_default(integrated_gradients, "steps"),
        help="ig: integration steps (default %(default)s; 1-4096)",
    )  # fmt: skip
    parser.add_argument("--top", type=int_in(1, 1000), default=10, help="rows shown (default 10; 1-1000)")
    add_output(parser, "--out", metavar="DIR", help="also write DIR/attribution.html (atomically)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..core import InputError

    if not args.prompt.strip():
        raise InputError(
            'the prompt is empty; give the text to explain, e.g. tsi attribute "The capital of France is"'
        )
    if args.steps < 2:
        raise InputError(f"--steps must be at least 2, not {args.steps}")
    out = output_dir(args, "out") if args.out else None
    model = load_model(args.model)
    for token in (args.target, args.baseline):
        if token is not None:
            model.token_id(token)  # one clear error for a target that is not exactly one token

    import torch_shard_interpret as tsi

    rows: list[tuple[str, float]]
    if args.method == "dla":
        result = tsi.attribution.direct_logit_attribution(model, args.prompt, args.target, args.baseline)
        what = f"logit({result.target_str!r})" + (
            f" - logit({result.baseline_str!r})" if result.baseline_str else ""
        )
        rows = sorted(result.components.items(), key=lambda kv: -abs(kv[1]))
        heads = [
            (f"L{i}H{h}", float(result.heads[i, h]))
            for i in range(result.heads.shape[0])
            for h in range(result.heads.shape[1])
        ]
        rows = rows[: args.top] + sorted(heads, key=lambda kv: -abs(kv[1]))[: args.top]
        footer = f"total {result.total:+.3f} = components {sum(result.components.values()):+.3f} + remainder {result.remainder:+.2e}"
        html = result.to_html()
    elif args.method == "saliency":
        scores = tsi.attribution.saliency(model, args.prompt, args.target, baseline=args.baseline)
        toks = model.to_str_tokens(args.prompt)
        what = f"gradient x input of logit({args.target or 'top prediction'!r})"
        rows = sorted(
            ((f"{t!r}·{i}", float(s)) for i, (t, s) in enumerate(zip(toks, scores.tolist(), strict=True))),
            key=lambda kv: -abs(kv[1]),
        )[: args.top]
        footer = f"sum {float(scores.sum()):+.3f}"
        html = _saliency_html(toks, scores.tolist(), what)
    else:
        if args.baseline is not None:
            raise InputError(
                "--baseline is for dla and saliency; integrated gradients integrates from a zero embedding"
            )
        result = tsi.attribution.integrated_gradients(
            model, args.prompt, args.target, steps=args.steps, keep=[0]
        )
        what = f"integrated gradients of logit({result.target_str!r}), first token held fixed"
        rows = sorted(
            (
                (f"{t!r}·{i}", float(a))
                for i, (t, a) in enumerate(zip(result.str_tokens, result.attributions.tolist(), strict=True))
            ),
            key=lambda kv: -abs(kv[1]),
        )[: args.top]
        footer = (
            f"completeness: sum {float(result.attributions.sum()):+.3f} vs f(input)-f(baseline) {result.delta:+.3f} "
            f"(relative error {result.relative_error:.1%}; {'passes' if result.passes() else 'raise --steps'})"
        )
        html = result.to_html()
    _print(rows, what, footer)
    if out is not None:
        with out.writing() as folder:
            atomic_write(folder / "attribution.html", html, mode=None)
        print(f"html: {(out.path / 'attribution.html').resolve()}")
    return 0


def _print(rows: list[tuple[str, float]], what: str, footer: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text without rich
        print(what)
        for name, value in rows:
            print(f"  {name:<28} {value:+.4f}")
        print(footer)
        return
    table = Table(title=what, title_justify="left")
    table.add_column("component / token")
    table.add_column("contribution", justify="right")
    for name, value in rows:
        table.add_row(name, f"[{'red' if value > 0 else 'blue'}]{value:+.4f}[/]")
    console = Console(file=sys.stdout)
    console.print(table)
    console.print(footer)


def _saliency_html(tokens: list[str], scores: list[float], title: str) -> str:
    from .. import _render

    peak = max((abs(s) for s in scores), default=1.0) or 1.0
    chips = _render.colored_tokens(tokens, scores, vmax=peak, titles=[f"{s:+.4f}" for s in scores])
    return _render.standalone("saliency", f"<h3>{_render.esc(title)}</h3><p>{chips}</p>")
