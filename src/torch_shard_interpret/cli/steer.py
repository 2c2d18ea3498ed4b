"""``tsi steer``: build a steering vector from contrast texts and show unsteered vs steered generations."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ._bounds import float_in, int_in
from ._common import add_model, api_default, load_model
from ._output import add_output, output_file

if TYPE_CHECKING:
    from ..core._model import Model

HELP = "build a steering vector from positive/negative texts and compare generations with and without it"


def register(subparsers: Any) -> None:
    from ..core import _model
    from ..steering import SteeringVector

    parser = subparsers.add_parser("steer", help=HELP, description=HELP + ".")
    add_model(parser)
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
    parser.add_argument(
        "--site", default=api_default(SteeringVector.from_contrast, "site"),
        help="where to read and add the vector (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--method", choices=("contrast", "pair", "pca"), default="contrast",
        help="contrast: mean difference (default); pair: one pair at matched positions (ActAdd); pca: first PC",
    )  # fmt: skip
    own = {
        m: api_default(f, "position")
        for m, f in (
            ("contrast", SteeringVector.from_contrast),
            ("pair", SteeringVector.from_pair),
            ("pca", SteeringVector.from_pca),
        )
    }
    parser.add_argument(
        "--position",
        help="token read in each text: an integer (-1: last) or 'mean' (default: the method's own, "
        + ", ".join(f"{m} {p}" for m, p in own.items()) + ")",
    )  # fmt: skip
    parser.add_argument(
        "--scale",
        type=float_in(-1000, 1000),
        default=api_default(SteeringVector.apply, "scale"),
        help="multiple of the vector to add (default %(default)g; -1000 to 1000)",
    )
    parser.add_argument(
        "--prompt", action="append", default=[], metavar="TEXT", help="prompt to continue (repeat)"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int_in(1, 2048),
        default=api_default(_model.Model.generate, "max_new_tokens"),
        metavar="N",
        help="tokens to generate (default %(default)s; 1-2048)",
    )
    add_output(
        parser,
        "--save",
        kind="file",
        metavar="PATH",
        help="also save the vector (.safetensors, written atomically)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..core import InputError
    from ..steering import SteeringVector

    save = output_file(args, "save", suggestion="vector.safetensors")  # before anything is read
    prompts = args.prompt or ["I think that"]
    if any(not p.strip() for p in prompts):
        raise InputError("--prompt is empty; give a non-blank prompt such as 'I think that'")
    if args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be at least 1, not {args.max_new_tokens}")
    where: dict[str, Any] = {} if args.position is None else {"position": _position(args.position)}
    if args.load:
        if args.positive or args.negative:
            raise InputError("give either --load or --positive/--negative, not both")
        sv = SteeringVector.load(args.load)
    elif not args.positive or not args.negative:
        raise InputError("give at least one --positive and one --negative text (or --load PATH)")
    model = load_model(args.model)
    if not args.load:
        if args.method == "pair":
            if len(args.positive) != 1 or len(args.negative) != 1:
                raise InputError("--method pair takes exactly one --positive and one --negative text")
            sv = SteeringVector.from_pair(model, args.positive[0], args.negative[0], args.site, **where)
        elif args.method == "pca":
            sv = SteeringVector.from_pca(model, args.positive, args.negative, args.site, **where)
        else:
            sv = SteeringVector.from_contrast(model, args.positive, args.negative, args.site, **where)
    if not args.load:
        _refuse_zero(model, sv, args.positive[0])
    plain = _as_list(model.generate(prompts, max_new_tokens=args.max_new_tokens))
    with sv.apply(model, scale=args.scale):
        steered = _as_list(model.generate(prompts, max_new_tokens=args.max_new_tokens))
    if save is not None:
        sv.save(save)
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


ZERO_RELATIVE = 1e-4  # a vector this small against the activations it is added to does nothing


def _refuse_zero(model: Model, sv: Any, text: str) -> None:
    """Refuse a vector that is (near) zero next to the activations at its site: adding it changes nothing."""
    from ..core import InputError

    run = model.run(text, cache=[sv.site], return_logits=False)
    acts = run.cache[sv.site].float()  # [batch, pos, d_model]
    typical = float(acts.norm(dim=-1).mean())
    if not sv.norm > ZERO_RELATIVE * typical:
        raise InputError(
            f"the steering vector at {sv.site} is zero (|v| = {sv.norm:.2g}, while activations there have norm "
            f"{typical:.3g}): the --positive and --negative texts give the same activations, so give texts that "
            "differ in what you want to steer"
        )


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
