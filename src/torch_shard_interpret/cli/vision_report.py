"""``tsi vision-report IMAGE``: one offline HTML page explaining an image model's prediction on one image."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._common import PRELOADED

HELP = "explain an image model's prediction on one image: attributions with sanity checks, Grad-CAM, features"
DEFAULT_MODEL = "digits-cnn"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "vision-report",
        help=HELP,
        description=HELP + ". Writes DIR/vision-report.html (self-contained, offline) and DIR/summary.json.",
    )
    parser.add_argument("image", metavar="IMAGE", help="a PNG, JPEG, BMP or GIF file (at most 20 MiB)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"vision model name (default {DEFAULT_MODEL})")
    parser.add_argument(
        "--out", metavar="DIR", default="reports/vision", help="output directory (default reports/vision)"
    )
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out directory")
    parser.add_argument(
        "--target", type=int, metavar="CLASS", help="class to explain (default: the prediction)"
    )
    parser.add_argument(
        "--steps", type=int, default=128, metavar="N", help="feature-visualisation steps (default 128)"
    )
    parser.set_defaults(run=run)


def _out_dir(path: Path, overwrite: bool) -> Path:
    from .._io import writable_dir_problem
    from ..core import InputError

    problem = writable_dir_problem(path)
    if problem is not None:
        raise InputError(
            f"cannot write to --out {str(path)!r}: {str(problem.path)!r} is not a writable directory"
        )
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise InputError(f"--out {str(path)!r} is not empty; choose an empty directory or pass --overwrite")
    return path


def run(args: argparse.Namespace) -> int:
    from .. import vision
    from .._io import atomic_write
    from ..core import InputError, Model
    from ..vision._featvis import input_shape_of
    from ..vision._imagefile import read_image, to_model_input
    from ..vision._report import build
    from ..vision._zoo import NAMES

    if args.steps < 1:
        raise InputError(f"--steps must be at least 1, not {args.steps}")
    out = _out_dir(Path(args.out).expanduser(), args.overwrite)
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
    out.mkdir(parents=True, exist_ok=True)
    page = atomic_write(out / "vision-report.html", html)
    atomic_write(out / "summary.json", json.dumps(summary, indent=2))
    flagged = [name for name, s in summary["sanity"].items() if s["flagged"]]
    print(f"predicted class {summary['prediction']} (p={max(summary['probabilities']):.3f})")
    print(f"sanity-check flags: {', '.join(flagged) if flagged else 'none'}")
    print(f"wrote {page}")
    return 0
