"""``tsi lens "PROMPT"``: the logit (or tuned) lens of a prompt in the terminal, optionally as HTML.

``tsi lens --train TEXTFILE --save PATH`` trains a tuned lens instead (one training text per line).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._io import atomic_write
from ._bounds import int_in, read_text
from ._common import add_model, add_progress, api_default, load_model, progress_for
from ._output import add_output, output_dir

HELP = "show the logit lens (or a tuned lens) of a prompt, or train a tuned lens"


def register(subparsers: Any) -> None:
    from ..lens import TunedLens

    parser = subparsers.add_parser("lens", help=HELP, description=HELP + ".")
    parser.add_argument("prompt", metavar="PROMPT", nargs="?", help="the text to read the lens of")
    add_model(parser)
    parser.add_argument(
        "--target", metavar="TOKEN", help="show the rank of this one token per layer, e.g. ' Paris'"
    )
    parser.add_argument(
        "--tuned", metavar="PATH", help="use the tuned lens saved at PATH instead of the logit lens"
    )
    add_output(parser, "--out", metavar="DIR", help="also write DIR/lens.html (atomically)")
    parser.add_argument(
        "--include-embed",
        action="store_true",
        help="add a first row for the embeddings (blocks.0.resid_pre, shown as 'emb')",
    )
    parser.add_argument(
        "--return-logits", action="store_true", help="also show each cell's logit beside its probability"
    )
    parser.add_argument(
        "--layers",
        type=int_in(1, 1000),
        default=12,
        metavar="N",
        help="rows shown in the table (default 12; 1-1000)",
    )
    parser.add_argument(
        "--train", metavar="TEXTFILE", help="train a tuned lens on TEXTFILE (one text per line)"
    )
    add_output(parser, "--save", metavar="DIR", help="where --train writes the tuned lens (a new folder)")
    parser.add_argument(
        "--steps",
        type=int_in(1, 100_000),
        default=api_default(TunedLens.train, "steps"),
        help="training steps for --train (default %(default)s; 1-100000)",
    )
    add_progress(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..core import InputError

    if args.train:
        if not args.save:
            raise InputError("--train needs --save PATH (the directory the tuned lens is written to)")
        return _train(args)
    if not args.prompt or not args.prompt.strip():
        raise InputError('give a prompt, e.g. tsi lens "The Eiffel Tower is in the city of"')
    out = output_dir(args, "out") if args.out else None
    model = load_model(args.model)
    import torch_shard_interpret as tsi

    rows = {"target": args.target, "include_embed": args.include_embed, "return_logits": args.return_logits}
    if args.tuned:
        result = tsi.lens.TunedLens.load(args.tuned)(model, args.prompt, **rows)
        kind = "tuned lens"
    else:
        result = tsi.lens.logit_lens(model, args.prompt, **rows)
        kind = "logit lens"
    _table(result, kind, args)
    if out is not None:
        with out.writing() as folder:
            _write(folder / "lens.html", result.to_html())
        print(f"html: {(out.path / 'lens.html').resolve()}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from ..core import InputError

    save = output_dir(args, "save")
    src = Path(args.train)
    texts = [line for line in read_text(src, "--train file").splitlines() if line.strip()]
    if not texts:
        raise InputError(f"--train {str(src)!r} has no text")
    model = load_model(args.model)
    import torch_shard_interpret as tsi

    lens = tsi.lens.TunedLens.train(model, texts, steps=args.steps, progress=progress_for(args))
    with save.writing() as folder:
        lens.save(folder)
    print(
        f"tuned lens: {save.path.resolve()} ({lens.info.get('tokens')} tokens, final mean KL {lens.info.get('final_mean_kl'):.3f})"
    )
    return 0


def _table(result: Any, kind: str, args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(file=sys.stdout, soft_wrap=True, highlight=False)
    n = result.n_layers
    rows = sorted({round(i * (n - 1) / max(min(args.layers, n) - 1, 1)) for i in range(min(args.layers, n))})
    names = [_row_name(result, i) for i in range(n)]
    logits = result.logits  # [n_layers, pos, d_vocab] with --return-logits, else None
    if args.target:
        ranks = result.rank()[:, -1]  # [n_layers]
        probs = result.prob()[:, -1]
        table = Table(title=f"{kind}: rank of {args.target!r} at the last position", title_justify="left")
        table.add_column("layer", justify="right")
        table.add_column("rank", justify="right")
        table.add_column("prob", justify="right")
        if logits is not None:
            table.add_column("logit", justify="right")
        table.add_column("top token")
        top = result.top_tokens(1)
        for i in rows:
            logit = [f"{float(logits[i, -1, result.target]):+.2f}"] if logits is not None else []
            table.add_row(
                names[i], str(int(ranks[i])), f"{float(probs[i]):.3f}", *logit, repr(top[i][-1][0][0])
            )
    else:
        cols = list(range(max(0, len(result.positions) - 8), len(result.positions)))
        table = Table(title=f"{kind}: top token per layer (last {len(cols)} positions)", title_justify="left")
        table.add_column("layer", justify="right")
        for c in cols:
            table.add_column(repr(result.str_tokens[c]))
        top = result.top_tokens(1)
        best = logits.max(-1).values if logits is not None else None  # [n_layers, pos]: the top token's logit
        for i in rows:
            table.add_row(
                names[i],
                *(
                    f"{top[i][c][0][0]!r} {top[i][c][0][1]:.2f}"
                    + (f" ({float(best[i, c]):+.1f})" if best is not None else "")
                    for c in cols
                ),
            )
    out.print(table)


def _row_name(result: Any, i: int) -> str:
    """``emb`` for the embedding row, else the block number (``blocks.3.resid_post`` -> ``3``)."""
    name = result.layer_names[i] if i < len(result.layer_names) else str(i)
    if name.endswith(".resid_pre"):
        return "emb"
    return name.split(".")[1] if name.startswith("blocks.") else str(i)


def _write(path: Path, text: str) -> Path:
    return atomic_write(path, text, mode=None, mkdir=True)
