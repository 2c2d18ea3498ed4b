"""``tsi steer``: build a steering vector from contrast texts and show unsteered vs steered generations."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._bounds import float_in, int_in
from ._common import PRELOADED, load_model

HELP = "build a steering vector from positive/negative texts and compare generations with and without it"
DEFAULT_MODEL = "smollm2-135m"

# Already wrapped models by name, used instead of loading (for tests and notebooks), as in `tsi report`.
_PRELOADED = PRELOADED  # the registry shared by all subcommands (cli/_common.py)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("steer", help=HELP, description=HELP + ".")
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"model name or path (default {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--positive",
        action="append",
        default=[],
        metavar="TEXT",
        help="a text of the side to steer towards (repeat)",
    )
    parser.add_argument(
        "--negative",
        action="append",
        default=[],
        metavar="TEXT",
        help="a text of the side to steer away from (repeat)",
    )
    parser.add_argument(
        "--load", metavar="PATH", help="use a vector saved with --save instead of --positive/--negative"
    )
    parser.add_argument("--site", default="blocks.6.resid_post", help="where to read and add the vector")
    parser.add_argument(
        "--method", choices=("contrast", "pair", "pca"), default="contrast",
        help="contrast: mean difference (default); pair: one pair at matched positions (ActAdd); pca: first PC",
    )  # fmt: skip
    parser.add_argument(
        "--position",
        default="mean",
        help="token read in each text: an integer (-1: last) or 'mean' (default)",
    )
    parser.add_argument(
        "--scale",
        type=float_in(-1000, 1000),
        default=4.0,
        help="multiple of the vector to add (default 4; -1000 to 1000)",
    )
    parser.add_argument(
        "--prompt", action="append", default=[], metavar="TEXT", help="prompt to continue (repeat)"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int_in(1, 2048),
        default=30,
        metavar="N",
        help="tokens to generate (default 30; 1-2048)",
    )
    parser.add_argument(
        "--save", metavar="PATH", help="also save the vector (.safetensors, written atomically)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..core import InputError
    from ..steering import SteeringVector

    prompts = args.prompt or ["I think that"]
    if any(not p.strip() for p in prompts):
        raise InputError("--prompt is empty; give a non-blank prompt such as 'I think that'")
    if args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be at least 1, not {args.max_new_tokens}")
    position = _position(args.position)
    if args.load:
        if args.positive or args.negative:
            raise InputError("give either --load or --positive/--negative, not both")
        sv = SteeringVector.load(args.load)
    elif not args.positive or not args.negative:
        raise InputError("give at least one --positive and one --negative text (or --load PATH)")
    if args.save:
        _check_writable(args.save)

    model = load_model(args.model)
    if not args.load:
        if args.method == "pair":
            if len(args.positive) != 1 or len(args.negative) != 1:
                raise InputError("--method pair takes exactly one --positive and one --negative text")
            sv = SteeringVector.from_pair(
                model, args.positive[0], args.negative[0], args.site, position=position
            )
        elif args.method == "pca":
            sv = SteeringVector.from_pca(model, args.positive, args.negative, args.site, position=position)
        else:
            sv = SteeringVector.from_contrast(
                model, args.positive, args.negative, args.site, position=position
            )
    plain = _as_list(model.generate(prompts, max_new_tokens=args.max_new_tokens))
    with sv.apply(model, scale=args.scale):
        steered = _as_list(model.generate(prompts, max_new_tokens=args.max_new_tokens))
    if args.save:
        sv.save(args.save)
    _print(prompts, plain, steered, sv, args)
    return 0


def _position(text: str) -> int | str:
    from ..core import InputError

    if text == "mean":
        return "mean"
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--position must be an integer (e.g. -1) or 'mean', not {text!r}") from None


def _check_writable(path: str) -> None:
    import os
    from pathlib import Path

    from ..core import InputError

    parent = Path(path).parent
    if not parent.is_dir():
        raise InputError(
            f"cannot save to {path!r}: the folder {str(parent)!r} does not exist; create it first"
        )
    if Path(path).is_dir():
        raise InputError(
            f"cannot save to {path!r}: it is a folder; give a file path such as vector.safetensors"
        )
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot save to {path!r}: the folder is not writable; choose another path")


def _as_list(out: Any) -> list[str]:
    return [out] if isinstance(out, str) else list(out)


def _print(
    prompts: list[str], plain: list[str], steered: list[str], sv: Any, args: argparse.Namespace
) -> None:
    head = f"{sv.site}  scale {args.scale:g}  |vector| {sv.norm:.3g}  ({sv.metadata.get('method', 'loaded')})"
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(head)
        for p, a, b in zip(prompts, plain, steered, strict=True):
            print(f"prompt:    {p}\nunsteered: {a!r}\nsteered:   {b!r}\n")
    else:
        table = Table(title=head, show_lines=True, expand=False)
        table.add_column("prompt", style="bold", overflow="fold")
        table.add_column("unsteered", overflow="fold")
        table.add_column(f"steered (x{args.scale:g})", overflow="fold", style="cyan")
        for p, a, b in zip(prompts, plain, steered, strict=True):
            table.add_row(p, a, b)
        Console(file=sys.stdout, soft_wrap=False).print(table)
    if args.save:
        print(f"saved the vector to {args.save}")
