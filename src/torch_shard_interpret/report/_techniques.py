"""The registry of techniques that the report, the web app and the command line show, each registered once.

A technique is a function of a prompt whose result has ``to_dict()`` and ``to_html()``. Registering it makes it

- a section of ``tsi report`` (computed with its default options, after the built-in sections),
- an endpoint ``POST /api/<name>`` and a tab of ``tsi serve`` (``GET /api/info`` lists it under
  ``techniques``; the answer is ``result.to_dict()`` plus the section's HTML),
- a subcommand ``tsi <name> PROMPT`` whose options are the fields of ``options`` (config dataclasses are the
  command line: ``cli/_fields.py``).

The registry lives here, in the report layer, because the report, ``serve`` and ``cli`` all sit above it and
read it; a technique package never imports it (imports point downward). A technique of this repository adds
its one ``register_technique(...)`` line at the end of this file; a user's own registers itself before
``tsi.serve.create_app`` or ``tsi.cli.main.main`` is called::

    @dataclass(frozen=True)
    class NormOptions:
        site: str = "blocks.0.resid_post"
        \"\"\"Where to read the norms.\"\"\"

    tsi.report.register_technique(tsi.report.Technique(
        "norms", "Residual norms", compute=norms, options=NormOptions, help="the norm of each position"))

The list of files a new technique touches is in docs/cli.md ("Adding a technique").
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._render import esc
from ..core._errors import InputError

NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
"""A technique's name: a CLI subcommand, an API path segment and an HTML id, so lowercase, digits and dashes."""


@dataclass(frozen=True)
class Technique:
    """One technique as the report, the web app and the command line show it."""

    name: str
    """``tsi <name>``, ``POST /api/<name>``, the report section's anchor: ``[a-z][a-z0-9-]{0,31}``."""
    title: str
    """The section heading and the tab label, e.g. ``"Residual norms"``."""
    compute: Callable[..., Any]
    """``compute(model, prompt, **options) -> result``; the result has ``to_dict()`` and ``to_html()``."""
    options: type | None = None
    """A frozen dataclass whose fields are the keyword options of ``compute`` (with their defaults and
    docstrings): ``--field`` options on the command line, JSON fields in the web app, defaults in the report."""
    section: Callable[[Any], str] | None = None
    """``section(result) -> HTML fragment`` (written beside the technique, on ``_render``); None: the
    standalone page of ``result.to_html()`` is shown in a sandboxed frame."""
    help: str = ""
    """One line for ``tsi --help`` and the tab."""
    forwards: int = 1
    """Forward passes over the prompt one call runs, for the web app's cost cap (``--max-cost``)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME.fullmatch(self.name):
            raise InputError(
                f"technique name {self.name!r} cannot be a subcommand and an API path; use lowercase letters, "
                "digits and dashes, starting with a letter (at most 32), e.g. 'residual-norms'"
            )
        if not callable(self.compute):
            raise InputError(
                f"technique {self.name!r}: compute must be a function (model, prompt, **options)"
            )
        if self.options is not None and not dataclasses.is_dataclass(self.options):
            raise InputError(
                f"technique {self.name!r}: options must be a dataclass type, not {self.options!r}"
            )
        if not isinstance(self.forwards, int) or self.forwards < 1:
            raise InputError(
                f"technique {self.name!r}: forwards must be a positive integer, not {self.forwards!r}"
            )

    def option_fields(self) -> tuple[dataclasses.Field[Any], ...]:
        return dataclasses.fields(self.options) if self.options is not None else ()

    def run(self, model: Any, prompt: str, **options: Any) -> Any:
        """``compute(model, prompt, **options)`` with every option checked by the options dataclass (its
        defaults fill the rest); refuses an option it does not have."""
        names = [f.name for f in self.option_fields()]
        unknown = sorted(set(options) - set(names))
        if unknown:
            known = ", ".join(names) or "none"
            raise InputError(f"technique {self.name!r} has no option {unknown[0]!r}; its options: {known}")
        if self.options is None:
            return self.compute(model, prompt)
        config = self.options(**options)  # its __post_init__, if any, checks the values
        return self.compute(model, prompt, **{n: getattr(config, n) for n in names})

    def section_html(self, result: Any) -> str:
        """The result as a section: ``section(result)``, or its standalone page in a sandboxed frame."""
        if self.section is not None:
            return self.section(result)
        return (
            f'<iframe sandbox="" title="{esc(self.title)}" style="width:100%;height:480px;border:0" '
            f'srcdoc="{esc(result.to_html())}"></iframe>'
        )


_REGISTERED: dict[str, Technique] = {}


def register_technique(technique: Technique) -> Technique:
    """Add ``technique`` to the report, the web app and the command line (read when each is built)."""
    if not isinstance(technique, Technique):
        raise InputError(f"register_technique takes a tsi.report.Technique, not {type(technique).__name__}")
    if technique.name in _REGISTERED and _REGISTERED[technique.name] is not technique:
        raise InputError(
            f"a technique named {technique.name!r} is registered already; choose another name, or call "
            "unregister_technique first"
        )
    _REGISTERED[technique.name] = technique
    return technique


def unregister_technique(name: str) -> None:
    """Remove the technique ``name`` (no error when there is none)."""
    _REGISTERED.pop(name, None)


def techniques() -> Mapping[str, Technique]:
    """``{name: Technique}`` of the registered techniques, in registration order (a copy)."""
    return dict(_REGISTERED)


# ---- the techniques of this repository: one register_technique(Technique(...)) line each -----------------
# (none yet: lens, DLA, patching and saliency predate the registry and keep their own sections and tabs)
