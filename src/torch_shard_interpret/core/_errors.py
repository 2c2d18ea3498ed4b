# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""The exception hierarchy. Every message is one sentence that names what was wrong and what would be right."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TsiError(Exception):
    """Base class of every error torch-shard-interpret raises on purpose."""


class SiteNotFoundError(TsiError, KeyError):
    """A site name (or glob) matched no site of the model."""

    def __init__(self, name: str, known: Iterable[str] = (), hint: str = ""):
        close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
        msg = f"unknown site {name!r}"
        if close:
            msg += "; did you mean " + ", ".join(repr(c) for c in close) + "?"
        else:
            msg += "; list the real names with model.sites() (raw sites look like 'path.to.module:output')"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)
        self.name = name
        self.suggestions = close

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return self.args[0]


class InterventionError(TsiError):
    """An intervention could not be applied (bad shape, dtype, selector or mode)."""


class ShapeMismatchError(InterventionError):
    """A patch or set value does not fit the site it is applied to."""


class PositionError(InterventionError, IndexError):
    """A position selector points outside the sequence."""


class SiteNotReachedError(TsiError):
    """An intervention was asked for at a site that the forward pass never ran."""


class ReentrantRunError(TsiError):
    """``run``/``generate``/``intervene`` was called from inside an intervention of a running forward."""


class GradModeError(TsiError):
    """Gradients were asked for where autograd is off."""


class ReadOnlySiteError(InterventionError):
    """The site can be cached but its value is not used downstream, so changing it has no effect."""


class AdapterError(TsiError):
    """The adapter of a model does not fit the module it was given."""


class ModelNotFoundError(TsiError):
    """A model name or path could not be loaded."""


class InputError(TsiError, ValueError):
    """The inputs given to run/generate cannot be used (empty prompt, no tokenizer, too long...)."""
