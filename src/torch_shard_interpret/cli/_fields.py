"""Config dataclasses are the command line: argparse options built from a frozen dataclass's fields.

Each field becomes ``--field-name`` with the field's type, its default (taken from the dataclass, never
repeated here) and its attribute docstring (the string literal written under the field) as the help text:

    add_fields(parser, TrainConfig, bounds={"steps": int_in(1, 10_000_000)})
    TrainConfig(**field_values(args, TrainConfig))

``int``/``float`` fields are parsed with the range-checked types of ``_bounds`` passed in ``bounds`` (a field
without one still refuses nan and inf); ``X | None`` fields default to None ("chosen from the data", as their
docstrings say); ``bool`` fields get ``--name`` / ``--no-name``; ``choices`` restricts a field to its values.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Any

from ._bounds import float_in


@cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field name: its attribute docstring}``, read from the class source with ``ast``; empty when there is no
    source to read (a class defined in a notebook cell, ``python -c`` or ``exec``)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)).body
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _base_type(hint: Any) -> tuple[Any, bool]:
    """``(type, optional)`` of a field annotation: ``int | None`` -> ``(int, True)``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else Any), True
    return hint, False


def _plain(text: str) -> str:
    """A docstring for ``--help``: no reST markup, ``%`` escaped for argparse."""
    return text.replace("``", "").replace("%", "%%")


def cli_fields(cls: type, exclude: Iterable[str] = ()) -> list[dataclasses.Field[Any]]:
    """The fields of ``cls`` that become options: all but ``exclude`` and those of dict/list type."""
    hints = typing.get_type_hints(cls)
    skip = set(exclude)
    out = []
    for f in dataclasses.fields(cls):
        base, _ = _base_type(hints[f.name])
        if f.name in skip or typing.get_origin(base) in (dict, list) or base in (dict, list):
            continue
        out.append(f)
    return out


def add_fields(
    parser: Any,
    cls: type,
    *,
    exclude: Iterable[str] = (),
    bounds: dict[str, Callable[[str], Any]] | None = None,
    choices: dict[str, Sequence[Any]] | None = None,
    defaults: dict[str, Any] | None = None,
    title: str | None = None,
) -> list[str]:
    """Add one option per field of ``cls`` (see the module docstring) in a group titled ``title``; returns the
    field names added. A field without a default is required, unless ``defaults`` gives it one (taken from the
    API function that fills it in, never written out here); ``defaults`` applies to no other field."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    bounds, choices = bounds or {}, choices or {}
    group = parser.add_argument_group(title or f"{cls.__name__} (one option per field)")
    names = []
    for f in cli_fields(cls, exclude):
        base, _ = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default: Any = (defaults or {}).get(f.name) if missing else f.default
        if default is dataclasses.MISSING:
            default = f.default_factory()  # type: ignore[misc]
        required = missing and default is None
        doc = _plain(docs.get(f.name, ""))
        shown = (
            ""
            if default is None
            else f" (default {default:g})"
            if isinstance(default, float)
            else f" (default {default})"
        )
        kwargs: dict[str, Any] = {"dest": f.name, "help": doc + shown}
        if base is bool:
            kwargs.update(action=argparse.BooleanOptionalAction, default=default)
        else:
            kind = bounds.get(f.name)
            if kind is None:
                kind = float_in(-math.inf, math.inf) if base is float else base if base in (int, str) else str
            kwargs.update(type=kind, default=default, required=required)
            if f.name in choices:
                kwargs["choices"] = tuple(choices[f.name])
            else:
                kwargs["metavar"] = {int: "N", float: "X"}.get(base, "TEXT")
        group.add_argument(flag, **kwargs)
        names.append(f.name)
    return names


def field_values(args: argparse.Namespace, cls: type, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """``{field: value}`` of the options ``add_fields(parser, cls, exclude=...)`` added, as parsed."""
    return {f.name: getattr(args, f.name) for f in cli_fields(cls, exclude)}
