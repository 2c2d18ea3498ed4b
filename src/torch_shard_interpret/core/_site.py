# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""Sites: named places in a model where an activation can be read or changed.

A site is a module plus where its value lives: the module's output (or one element of an output
tuple) or one of its inputs. Canonical sites (``blocks.3.resid_post``) come from an adapter; raw
sites (``model.layers.3.mlp:output``) name any module by path.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from ._errors import SiteNotFoundError

# "scores": the first softmax input inside the module's forward (pre-softmax attention scores).
Kind = Literal["output", "input", "scores"]

# Dimension names in the TransformerLens vocabulary; a layout is a tuple of them.
RESID = ("batch", "pos", "d_model")
HEADS = ("batch", "pos", "n_heads", "d_head")
PATTERN = ("batch", "n_heads", "q_pos", "k_pos")


@dataclass(eq=False)
class Site:
    """One place where an activation lives.

    ``index`` chooses the element: for an output, the tuple index (0 by default); for an input,
    the positional index or the keyword name (``None``: the first positional argument, else the
    ``hidden_states`` keyword, else the first tensor keyword).
    """

    name: str
    module_path: str
    module: nn.Module
    kind: Kind
    index: int | str | None = None
    layout: tuple[str, ...] | None = None
    n_heads: int | None = (
        None  # set when the raw tensor is [..., n_heads * d_head] shown as [..., n_heads, d_head]
    )
    writable: bool = True
    requires: str | None = None  # a condition the model must meet, e.g. "eager" attention for patterns
    extra: dict[str, Any] = field(default_factory=dict)
    # A view (``_views.py``) shows a function of the raw tensor: a slice of a fused projection, a norm scale.
    view: Any = None
    read_only_reason: str | None = None  # why the site cannot be changed, when writable is False

    # ---- reading and writing the hook payload -------------------------------------------------
    def get(self, payload: Any) -> torch.Tensor:
        """The site's tensor from an output (kind ``output``) or ``(args, kwargs)`` (kind ``input``)."""
        raw = self._get_raw(payload)
        if self.view is not None:
            return self.view.get(raw)
        if self.n_heads is not None:
            raw = raw.unflatten(-1, (self.n_heads, -1))
        return raw

    def put(self, payload: Any, value: torch.Tensor) -> Any:
        """Return the payload with the site's tensor replaced by ``value``."""
        if self.view is not None:
            value = self.view.put(self._get_raw(payload), value)
        elif self.n_heads is not None:
            value = value.flatten(-2)
        if self.kind == "scores":
            return value
        if self.kind == "output":
            return _put_output(payload, self.index, value)
        args, kwargs = payload
        where = self._input_slot(args, kwargs)
        if isinstance(where, int):
            args = (*args[:where], value, *args[where + 1 :])
        else:
            kwargs = {**kwargs, where: value}
        return args, kwargs

    def _get_raw(self, payload: Any) -> torch.Tensor:
        if self.kind == "scores":
            return payload
        if self.kind == "output":
            return _get_output(payload, self.index, self.name)
        args, kwargs = payload
        where = self._input_slot(args, kwargs)
        return args[where] if isinstance(where, int) else kwargs[where]

    def _input_slot(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | str:
        if isinstance(self.index, int):
            return self.index
        if isinstance(self.index, str) and self.index in kwargs:
            return self.index
        if args and torch.is_tensor(args[0]):
            return 0
        if "hidden_states" in kwargs:
            return "hidden_states"
        for key, val in kwargs.items():
            if torch.is_tensor(val):
                return key
        raise SiteNotFoundError(self.name, hint="the module was called without a tensor input")

    # ---- dimensions ---------------------------------------------------------------------------
    def dim(self, name: str, ndim: int) -> int | None:
        """Index of dimension ``name`` (``batch``, ``pos``, ``n_heads``) in a value with ``ndim`` dims."""
        if self.layout is not None:
            for i, dim_name in enumerate(self.layout):
                if dim_name == name or (name == "pos" and dim_name == "q_pos"):
                    return i
            return None
        # Raw site without a declared layout: [batch, pos, ...] when it has at least 2 dims.
        if name == "batch":
            return 0 if ndim >= 1 else None
        if name == "pos":
            return 1 if ndim >= 2 else None
        return None


def _get_output(output: Any, index: int | str | None, name: str) -> torch.Tensor:
    if torch.is_tensor(output):
        if index not in (None, 0):
            raise SiteNotFoundError(
                name, hint=f"the module returns one tensor, so it has no output element {index}"
            )
        return output
    if isinstance(output, Mapping):  # ModelOutput and dicts
        if isinstance(index, str):
            return output[index]
        values = [v for v in output.values() if torch.is_tensor(v)]
        return values[index or 0]
    if isinstance(output, (tuple, list)):
        item = output[index if isinstance(index, int) else 0]
        if item is None:
            raise SiteNotFoundError(
                name, hint="the module returned None there; attention patterns need eager attention"
            )
        return item
    raise SiteNotFoundError(name, hint=f"the module returned a {type(output).__name__}, not a tensor")


def _put_output(output: Any, index: int | str | None, value: torch.Tensor) -> Any:
    if torch.is_tensor(output):
        return value
    if isinstance(output, MutableMapping):
        key = (
            index
            if isinstance(index, str)
            else [k for k, v in output.items() if torch.is_tensor(v)][index or 0]
        )
        output[key] = value
        return output
    items = list(output)
    items[index if isinstance(index, int) else 0] = value
    if isinstance(output, list):
        return items
    if hasattr(output, "_fields"):  # namedtuple
        return type(output)(*items)
    return tuple(items)


# ---- names and globs ------------------------------------------------------------------------------
_RAW = re.compile(r"^(?P<path>[^:]*):(?P<kind>output|input)(?:\.(?P<index>\w+))?$")


def parse_raw(name: str) -> tuple[str, Kind, int | str | None] | None:
    """Split ``"path:output"``, ``"path:input"``, ``"path:output.1"`` or ``"path:input.hidden_states"``."""
    match = _RAW.match(name)
    if match is None:
        return None
    index: int | str | None = match["index"]
    if isinstance(index, str) and index.isdigit():
        index = int(index)
    return match["path"], match["kind"], index  # type: ignore[return-value]


def is_glob(name: str) -> bool:
    return any(ch in name for ch in "*?[")


def natural_key(name: str) -> list[int | str]:
    """Sort key that puts ``blocks.2`` before ``blocks.10``."""
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", name)]


def match_glob(pattern: str, names: Iterable[str]) -> list[str]:
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]
