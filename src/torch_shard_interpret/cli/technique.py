"""``tsi <name> PROMPT``: one subcommand per registered technique (``tsi.report.register_technique``).

Its options are the fields of the technique's options dataclass (``_fields``: defaults and help texts are the
dataclass's own). It prints ``result.to_dict()`` as JSON; ``--out DIR`` also writes ``DIR/<name>.html``
(``result.to_html()``) and ``DIR/<name>.json``, atomically.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import add_model, load_model
from ._fields import add_fields, field_values
from ._output import add_output, output_dir

OWN = frozenset({"prompt", "model", "out", "overwrite"})
"""Options every technique subcommand has; a technique's options may not take these names."""


def register(subparsers: Any) -> None:
    """Add one subparser per registered technique (none are registered by default)."""
    from ..report._techniques import techniques
    from .main import UsageError

    for name, technique in techniques().items():
        if name in subparsers.choices:
            raise UsageError(
                f"technique {name!r} has the name of a built-in subcommand (tsi {name}); register it under "
                "another name"
            )
        clash = sorted(OWN & {f.name for f in technique.option_fields()})
        if clash:
            raise UsageError(
                f"technique {name!r} has an option named {clash[0]!r}, which its subcommand already has; "
                "rename that field"
            )
        text = technique.help or technique.title
        parser = subparsers.add_parser(name, help=text, description=f"{text}. The result is printed as JSON.")
        parser.add_argument("prompt", metavar="PROMPT", help="the text the technique looks at")
        add_model(parser)
        add_output(parser, "--out", metavar="DIR", help=f"also write DIR/{name}.html and DIR/{name}.json")
        if technique.options is not None:
            add_fields(
                parser, technique.options, title=f"{technique.options.__name__} (the technique's options)"
            )
        parser.set_defaults(run=run, technique=name)


def run(args: argparse.Namespace) -> int:
    from .._io import atomic_write
    from ..core import InputError
    from ..core._result import jsonable
    from ..report._techniques import techniques

    technique = techniques().get(args.technique)
    if technique is None:
        raise InputError(f"the technique {args.technique!r} is no longer registered")
    if not args.prompt.strip():
        raise InputError(
            f'the prompt is empty; give the text to look at, e.g. tsi {technique.name} "The cat"'
        )
    out = output_dir(args, "out") if args.out else None
    options = field_values(args, technique.options) if technique.options is not None else {}
    result = technique.run(load_model(args.model), args.prompt, **options)
    data = json.dumps(jsonable(result.to_dict()), indent=1, allow_nan=False)
    print(data)
    if out is not None:
        with out.writing() as folder:
            atomic_write(folder / f"{technique.name}.html", result.to_html(), mode=None)
            atomic_write(folder / f"{technique.name}.json", data + "\n", mode=None)
        print(f"wrote {out.path / (technique.name + '.html')} and {technique.name}.json")
    return 0
