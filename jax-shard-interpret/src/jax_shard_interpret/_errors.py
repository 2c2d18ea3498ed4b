"""Errors: one clear sentence that names what was wrong and what would be right."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


class JsiError(Exception):
    """Base class of every error jax-shard-interpret raises on bad input."""


class InputError(JsiError, ValueError):
    """An argument has the wrong type, shape or value."""


class InterventionError(JsiError, ValueError):
    """An intervention does not fit the site it is applied to."""


class ModelError(JsiError, ValueError):
    """A model cannot be wrapped, loaded or read out."""


class SiteNotFoundError(JsiError, KeyError):
    """A site name (or glob) matches no site of the model; the message lists the closest real names."""

    def __init__(self, name: str, known: Sequence[str], hint: str = ""):
        close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
        msg = f"no site {name!r} in this model"
        if close:
            msg += f"; did you mean {', '.join(repr(c) for c in close)}?"
        elif known:
            msg += f"; sites look like {', '.join(repr(k) for k in list(known)[:3])}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])
