"""``tsi vision-report IMAGE``: one offline HTML page explaining an image model's prediction on one image."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..vision._zoo import DEFAULT as DEFAULT_MODEL
from ..vision._zoo import NAMES
from ._bounds import int_in
from ._common import PRELOADED, add_model, api_default
from ._output import add_output, output_dir

HELP = "explain an image model's prediction on one image: attributions with sanity checks, Grad-CAM, features"


def register(subparsers: Any) -> None:
    from ..vision._report import build

    parser = subparsers.add_parser(
        "vision-report",
        help=HELP,
        description=HELP + ". Writes DIR/vision-report.html (self-contained, offline) and DIR/summary.json.",
    )
    parser.add_argument("image", metavar="IMAGE", help="a PNG, JPEG, BMP or GIF file (at most 20 MiB)")
    add_model(parser, DEFAULT_MODEL, what="vision model")
    add_output(
        parser,
        "--out",
        metavar="DIR",
        default="reports/vision",
        help="output directory (default reports/vision)",
    )
    parser.add_argument(
        "--target", type=int, metavar="CLASS", help="class to explain (default: the prediction)"
    )
    parser.add_argument(
        "--steps",
        type=int_in(1, 100_000),
        default=api_default(build, "vis_steps"),
        metavar="N",
        help="feature-visualisation steps (default %(default)s; 1-100000)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import vision
    from .._io import atomic_write
    from ..core import InputError, Model
    from ..vision._featvis import input_shape_of
    from ..vision._imagefile import read_image, to_model_input
    from ..vision._report import build

    if args.steps < 1:
        raise InputError(f"--steps must be at least 1, not {args.steps}")
    out = output_dir(args, "out")
    rgb = read_image(args.image)  # validated before any model work
    model = PRELOADED.get(args.model)
    if model is None:
        if args.model not in NAMES:
            raise InputError(f"unknown vision model {args.model!r}; the embedded ones are {', '.join(NAMES)}")
        print(f"Loading {args.model}", file=sys.stderr)
        model = vision.load(args.model)
    if not isinstance(model, Model):  # a plain nn.Module in PRELOADED
        model = vision.wrap(model)
    label_model = (
        vision.load("digits-cnn-random-labels", progress=False) if args.model == "digits-cnn" else None
    )
    image = to_model_input(rgb, input_shape_of(model), digits_style=args.model.startswith("digits"))
    html, summary = build(
        model, image, target=args.target, title=Path(args.image).name, vis_steps=args.steps, label_model=label_model,
        step=lambda msg: print(f"Computing {msg}", file=sys.stderr),
    )  # fmt: skip
    with out.writing() as folder:
        atomic_write(folder / "vision-report.html", html)
        atomic_write(folder / "summary.json", json.dumps(summary, indent=2))
    page = out.path / "vision-report.html"
    flagged = [name for name, s in summary["sanity"].items() if s["flagged"]]
    print(f"predicted class {summary['prediction']} (p={max(summary['probabilities']):.3f})")
    print(f"sanity-check flags: {', '.join(flagged) if flagged else 'none'}")
    print(f"wrote {page}")
    return 0
