# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""RunResult: what one ``Model.run`` returns (logits, the cache, tokens, gradients); ``jsonable`` for results.

Every technique's result class has ``to_dict()`` (JSON-safe: lists, floats, strings; no tensors) and
``to_html()`` (a standalone page, or a section where the class says so). ``jsonable`` is the one converter
they share, so that ``json.dumps(result.to_dict(), allow_nan=False)`` always works; ``fields_dict`` is the
``to_dict()`` of a result dataclass that is its fields plus a few derived values.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ._cache import ActivationCache
from ._errors import InputError
from ._tokens import str_tokens


@dataclass(slots=True)  # slots: a run builds one per call, and small calls feel it
class RunResult:
    """What one ``Model.run`` returns."""

    logits: torch.Tensor | None
    """``[batch, pos, d_vocab]`` (or the model's main output tensor); None when the run stopped early."""
    cache: ActivationCache
    """Recorded activations, by site name (the values after this run's interventions)."""
    tokens: torch.Tensor | None = None
    """``[batch, pos]`` token ids, when the input was text or ids."""
    attention_mask: torch.Tensor | None = None
    grads: dict[str, torch.Tensor] = field(default_factory=dict)
    """``d(scalar)/d(activation)`` for each recorded site, when ``grad=`` was given."""
    output: Any = None
    """The module's raw output."""
    tokenizer: Any = field(default=None, repr=False)

    @property
    def str_tokens(self) -> list[str] | list[list[str]]:
        """Tokens as strings: a list for one prompt, a list of lists for a batch."""
        if self.tokens is None or self.tokenizer is None:
            raise InputError("str_tokens needs text or token ids and a tokenizer")
        rows = [str_tokens(self.tokenizer, row) for row in self.tokens]
        return rows[0] if len(rows) == 1 else rows


def logits_of(result: RunResult, needed_by: str) -> torch.Tensor:
    """``result.logits``; an InputError naming ``needed_by`` when the run has none (the module's output is neither
    a tensor nor has ``.logits``, or the run stopped early with ``return_logits=False``)."""
    if result.logits is None:
        raise InputError(
            f"{needed_by} needs the model's logits, but the run returned none; wrap a module whose output is a "
            "tensor or has .logits, and run it with return_logits=True"
        )
    return result.logits


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON-safe Python: tensors and numpy arrays as nested lists, NaN and infinities as
    None (strict JSON has neither), tuples and sets as lists, mapping keys as strings, anything else unknown
    as its ``repr``."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    tolist = getattr(obj, "tolist", None)  # torch.Tensor, numpy arrays and numpy scalars
    if callable(tolist):
        return jsonable(tolist())
    return repr(obj)


def fields_dict(result: Any, *, exclude: Collection[str] = (), **extra: Any) -> dict[str, Any]:
    """``jsonable`` of every field of the dataclass instance ``result`` in declaration order (but those named in
    ``exclude``, such as a tokenizer), followed by ``extra`` (derived values such as a property)."""
    if not dataclasses.is_dataclass(result) or isinstance(result, type):
        raise TypeError(f"fields_dict needs a dataclass instance, not {type(result).__name__}")
    values = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name not in exclude}
    return jsonable({**values, **extra})
