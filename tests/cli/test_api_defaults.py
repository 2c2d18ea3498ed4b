"""No literal default in cli/ duplicates one in the API (issue 11 section 4).

The test reads every module of ``cli/`` with ``ast``, collects the API objects it imports (``from ..pkg import f``,
``tsi.pkg.f``, and ``tsi.Model``, which every subcommand calls), and the parameters and dataclass fields of those
objects that have a default. Then:

- an option written ``add_argument("--name", default=<literal>)`` whose name is one of those parameters is a
  copy of the API's default (or a second, different one): it must take it with ``api_default(func, "name")``,
  or be listed in ``CLI_ONLY`` with the reason its meaning is the command line's own;
- a call keyword ``name=<literal>`` equal to the default of an API parameter ``name`` repeats that default and
  must be left out.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import torch_shard_interpret as tsi
from torch_shard_interpret.cli.main import build_parser, iter_parsers

CLI = Path(tsi.__file__).parent / "cli"
# (module, option dest): why a literal default there is the command line's own and not the API's.
CLI_ONLY = {
    (
        "attribute.py",
        "method",
    ): "--method chooses which API function runs (dla, saliency, ig), not a parameter",
}
# Calls that build the parser or print; their keywords are never API parameters.
NOT_API = {"add_argument", "add_output", "add_fields", "add_parser", "add_model", "set_defaults", "print"}


def _with_defaults(obj: Any, qual: str) -> Iterator[tuple[str, str, Any]]:
    """``(parameter, where, default)`` of a function, or of a class's dataclass fields and public methods."""
    if inspect.isclass(obj):
        if dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                if f.default is not dataclasses.MISSING:
                    yield f.name, f"{qual}.{f.name}", f.default
        for name, member in inspect.getmembers(obj, callable):
            if not name.startswith("_") or name == "__init__":
                yield from _with_defaults(member, f"{qual}.{name}")
        return
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature
        return
    for p in params:
        if p.default is not inspect.Parameter.empty:
            yield p.name, qual, p.default


def _api_objects(tree: ast.AST) -> Iterator[tuple[Any, str]]:
    """The API objects a cli module uses: ``from ..pkg import name`` (anywhere) and ``tsi.pkg.name`` chains."""
    yield tsi.Model, "Model"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 2:
            module = importlib.import_module(
                "torch_shard_interpret" + (f".{node.module}" if node.module else "")
            )
            for alias in node.names:
                obj = getattr(module, alias.name, None)
                if obj is not None and not inspect.ismodule(obj):
                    yield obj, f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Attribute):
            chain, base = [], node
            while isinstance(base, ast.Attribute):
                chain.insert(0, base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id == "tsi" and len(chain) >= 2:
                obj: Any = tsi
                for part in chain:
                    obj = getattr(obj, part, None)
                if obj is not None and not inspect.ismodule(obj):
                    yield obj, ".".join(chain)


def api_defaults(tree: ast.AST) -> dict[str, list[tuple[str, Any]]]:
    found: dict[str, list[tuple[str, Any]]] = {}
    for obj, qual in _api_objects(tree):
        for name, where, default in _with_defaults(obj, qual):
            found.setdefault(name, []).append((where, default))
    return found


def _dest(call: ast.Call) -> str | None:
    for kw in call.keywords:
        if kw.arg == "dest" and isinstance(kw.value, ast.Constant):
            return str(kw.value.value)
    flags = [a.value for a in call.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")]
    return flags[0][2:].replace("-", "_") if flags else None


def literal_defaults(tree: ast.AST) -> Iterator[tuple[str, str, Any, int]]:
    """``("option" | "keyword", name, literal, line)`` of every literal default or call keyword (None excepted)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        for kw in node.keywords:
            if kw.arg is None or not isinstance(kw.value, ast.Constant) or kw.value.value is None:
                continue
            if func == "add_argument" and kw.arg == "default":
                dest = _dest(node)
                if dest is not None:
                    yield "option", dest, kw.value.value, node.lineno
            elif func not in NOT_API:
                yield "keyword", kw.arg, kw.value.value, node.lineno


def duplicates(source: str, module: str) -> list[str]:
    tree = ast.parse(source)
    api = api_defaults(tree)
    found = []
    for what, name, value, line in literal_defaults(tree):
        for where, default in api.get(name, []):
            if what == "option" and (module, name) not in CLI_ONLY:
                found.append(f"{module}:{line} --{name.replace('_', '-')} default={value!r} while {where} has "
                             f"{name}={default!r}: use api_default(...)")  # fmt: skip
            elif what == "keyword" and type(value) is type(default) and value == default:
                found.append(f"{module}:{line} {name}={value!r} repeats the default of {where}: leave it out")
    return found


def test_no_literal_default_in_cli_duplicates_the_api():
    problems = [p for path in sorted(CLI.glob("*.py")) for p in duplicates(path.read_text(), path.name)]
    assert not problems, "\n".join(problems)


def test_cli_only_entries_are_still_needed():
    for module, dest in CLI_ONLY:
        tree = ast.parse((CLI / module).read_text())
        api = api_defaults(tree)
        options = {name for what, name, _, _ in literal_defaults(tree) if what == "option"}
        assert dest in options and dest in api, f"CLI_ONLY lists {module} {dest}, which no longer collides"


@pytest.mark.parametrize(
    "source, expected",
    [
        (
            'from ..diff import train_crosscoder\np.add_argument("--steps", type=int, default=500)\n',
            "--steps",
        ),
        (
            "from ..diff import train_crosscoder\ntrain_crosscoder(a, b, t, site=s, batch_size=1024)\n",
            "batch_size",
        ),
        (
            "import torch_shard_interpret as tsi\ntsi.attribution.integrated_gradients(m, p, steps=32)\n",
            "steps",
        ),
        ('p.add_argument("--max-new-tokens", default=30)\n', "Model.generate"),
    ],
)
def test_the_finder_catches_a_copied_default(source, expected):
    found = duplicates(source, "x.py")
    assert len(found) == 1 and expected in found[0], found


def test_the_finder_accepts_api_default_and_other_values():
    source = (
        "from ..diff import train_crosscoder\n"
        'p.add_argument("--steps", default=api_default(train_crosscoder, "steps"))\n'
        'p.add_argument("--rows", default=12)\n'
        "train_crosscoder(a, b, t, site=s, batch_size=64)\n"
    )
    assert duplicates(source, "x.py") == []


NUMBER_IN_HELP = re.compile(r"\(default ([-+]?\d[\d_]*(?:\.\d+)?(?:e[-+]?\d+)?)(?=[;)])")


def _help_numbers() -> Iterator[tuple[str, argparse.Action, str]]:
    for command, parser in iter_parsers(build_parser()):
        for action in parser._actions:
            shown = (action.help or "") % {**vars(action), "prog": parser.prog}  # as --help shows it
            for m in NUMBER_IN_HELP.finditer(shown):
                yield command, action, m.group(1)


def test_a_number_in_help_is_the_options_real_default():
    seen = 0
    for command, action, text in _help_numbers():
        seen += 1
        assert action.default is not None and float(action.default) == float(text), (
            f"`tsi {command} {action.option_strings[0]}` says default {text} but defaults to {action.default!r}"
        )
    assert seen > 10  # the help texts do state numbers (formatted from the real default)
