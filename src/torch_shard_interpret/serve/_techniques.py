"""The registered techniques (``tsi.report.register_technique``) as endpoints: ``POST /api/<name>`` (and jobs of
that kind) answer ``result.to_dict()`` plus ``section_html``; ``GET /api/info`` describes them for the page,
which adds one tab per technique (``static/js/techniques.js``).

A request is ``{"prompt": ..., <option>: value, ...}``; each option is checked against the type of its field
in the technique's options dataclass (bool, int, float or str; other fields keep their defaults here).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..core._errors import InputError
from ..core._result import jsonable
from ..report._techniques import Technique
from . import _specs as S
from ._specs import RequestError

RESERVED = frozenset({"info", "sites", "vision", "vectors", "jobs", "saes", "static"})
"""Paths under ``/api`` that are not model work: no technique may take these names."""
LIMIT = 2**53  # the largest integer a browser's JSON keeps exactly

Progress = Callable[[float, str], None]
Work = Callable[..., dict[str, Any]]  # work(state, body, progress=...), as the built-in kinds of _compute.py


def _quiet(_: float, __: str) -> None:
    pass


def kinds(registered: Mapping[str, Technique], taken: Iterable[str]) -> dict[str, Work]:
    """``{name: work}`` of the techniques ``registered`` when the app was made; refuses a name it already uses."""
    used = set(taken) | RESERVED
    out: dict[str, Work] = {}
    for name, technique in registered.items():
        if name in used:
            raise InputError(
                f"technique {name!r} has the name of a built-in endpoint of tsi serve (POST /api/{name}); "
                "register it under another name"
            )
        out[name] = _work(technique)
    return out


def _work(technique: Technique) -> Work:
    def work(state: Any, body: Mapping[str, Any], progress: Progress = _quiet) -> dict[str, Any]:
        prompt = S.text(body, "prompt")
        assert prompt is not None  # required
        options = options_from(technique, body)
        progress(0.05, technique.title)
        result = technique.run(state.model, prompt, **options)
        return {"technique": technique.name, "prompt": prompt, **result.to_dict(),
                "section_html": technique.section_html(result)}  # fmt: skip

    return work


def _field_types(technique: Technique) -> dict[str, Any]:
    hints = typing.get_type_hints(technique.options) if technique.options is not None else {}
    out = {}
    for f in technique.option_fields():
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        out[f.name] = args[0] if len(args) == 1 else hint  # ``int | None`` -> int
    return out


def options_from(technique: Technique, body: Mapping[str, Any]) -> dict[str, Any]:
    """The options a request gives, each checked against its field's type (absent: the field's default)."""
    values: dict[str, Any] = {}
    for name, kind in _field_types(technique).items():
        if name not in body or body[name] is None:
            continue
        value = body[name]
        if kind is bool:
            if not isinstance(value, bool):
                raise RequestError(f"{name!r} must be true or false, not {S._type(value)}")
        elif kind is int:
            value = S.integer(body, name, None, -LIMIT, LIMIT)
        elif kind is float:
            value = S.number(body, name, 0.0, float(LIMIT))
        elif kind is str:
            value = S.text(body, name, required=False)
        else:
            raise RequestError(f"{name!r} cannot be set from the web app; leave it out to use its default")
        values[name] = value
    return values


def describe(registered: Mapping[str, Technique]) -> list[dict[str, Any]]:
    """What ``GET /api/info`` says of each technique: its name, title, help and options (type and default)."""
    out = []
    for name, technique in registered.items():
        types = _field_types(technique)
        options = [
            {"name": f.name, "type": getattr(types[f.name], "__name__", "other"),
             "default": None if f.default is dataclasses.MISSING else jsonable(f.default)}
            for f in technique.option_fields()
        ]  # fmt: skip
        out.append({"name": name, "title": technique.title, "help": technique.help, "options": options})
    return out
