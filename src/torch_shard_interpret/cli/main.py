"""The ``tsi`` entry point: argument parsing, subcommand dispatch and the one-line error handler.

Adding a subcommand: write ``cli/<name>.py`` with

    def register(subparsers) -> None:       # add a parser; set_defaults(run=run)
    def run(args: argparse.Namespace) -> int:

and add its module name to ``SUBCOMMANDS`` below. Keep heavy imports (torch, transformers) inside
``run`` so that ``tsi --help`` stays fast. A technique registered with ``tsi.report.register_technique``
needs neither: ``cli/technique.py`` makes its subcommand (see docs/cli.md, "Adding a technique").
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

from ._output import record_flags

PROG = "tsi"

# Module names under torch_shard_interpret.cli, in the order `tsi --help` lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "models",
    "report",
    "lens",
    "attribute",
    "patch",
    "steer",
    "probe",
    "serve",
    "harvest",
    "train_sae",
    "bench",
    "vision_report",
    "anomaly",
    "diff",
    "circuit",
)
# Modules that add a subcommand per registered technique (tsi.report.register_technique), none by default;
# they come after the built-in ones, so that a technique cannot take a built-in's name.
DYNAMIC: tuple[str, ...] = ("technique",)

_TRUTHY = {"1", "true", "yes", "on"}


class UsageError(Exception):
    """Bad command-line syntax (unknown subcommand, missing or invalid argument)."""


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are raised (and printed by ``main`` as one line), not exited."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="torch-shard-interpret: interpretability on any PyTorch model.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback on errors (or set TSI_DEBUG=1)"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name in (*SUBCOMMANDS, *DYNAMIC):
        importlib.import_module(f"{__package__}.{name}").register(subparsers)
    for _, sub in iter_parsers(parser):
        record_flags(sub)
    return parser


def iter_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """``("anomaly fit", parser)`` for every subcommand parser under ``parser``, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield " ".join((*path, name)), sub
                yield from iter_parsers(sub, (*path, name))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("torch-shard-interpret")
    except Exception:  # not installed (running from a source tree)
        return "unknown"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tsi`` command line; returns the process exit code (0 ok, 2 error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("TSI_DEBUG", "").strip().lower() in _TRUTHY
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _error(_one_line(exc))
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 0

    from ..core import TsiError

    try:
        code = args.run(args)
    except BrokenPipeError:  # `tsi models | head`: stop quietly, as a shell tool does on SIGPIPE
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except UsageError as exc:
        return _error(_one_line(exc))
    except (TsiError, OSError, ValueError) as exc:
        if debug:
            traceback.print_exc()
        return _error(_one_line(exc))
    return 0 if code is None else int(code)


if __name__ == "__main__":
    raise SystemExit(main())
