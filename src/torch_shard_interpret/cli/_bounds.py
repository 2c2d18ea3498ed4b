"""Range-checked argparse types and safe text-file reading, shared by every subcommand.

``parser.add_argument("--steps", type=int_in(1, 4096))`` makes ``--steps 1000000000`` fail at parse time
with ``argument --steps: must be an integer from 1 to 4096, not 1000000000`` (exit status 2), before any
model loads. ``float_in`` refuses nan and inf as well as values out of range.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers ``lo <= n <= hi``; the error names the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer from {lo} to {hi}, not {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer from {lo} to {hi}, not {value}")
        return value

    parse.__name__ = "integer"
    return parse


def float_in(lo: float, hi: float, *, open_lo: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` accepting finite numbers in ``[lo, hi]`` (``(lo, hi]`` with ``open_lo``)."""
    left = "(" if open_lo else "["

    def parse(text: str) -> float:
        span = f"a finite number in {left}{lo:g}, {hi:g}]"
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {span}, not {text!r}") from None
        if not math.isfinite(value) or value < lo or value > hi or (open_lo and value == lo):
            raise argparse.ArgumentTypeError(f"must be {span}, not {text}")
        return value

    parse.__name__ = "number"
    return parse


def read_text(path: str | Path, what: str = "input file") -> str:
    """The UTF-8 text of ``path``; a missing, binary or undecodable file raises ``InputError`` naming it."""
    from ..core import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"no {what} at {str(p)!r}; give the path of a UTF-8 text file")
    data = p.read_bytes()
    if b"\x00" in data[:65536]:
        raise InputError(f"{what} {str(p)!r} is a binary file (it holds NUL bytes); give a UTF-8 text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{what} {str(p)!r} is not UTF-8 text (undecodable byte at offset {exc.start}); "
            "convert it to UTF-8"
        ) from None
