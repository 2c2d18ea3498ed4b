"""Request checking: JSON fields to Python values and JSON intervention specs to ``tsi`` interventions.

Nothing here evaluates user code: an intervention is data (a site name, a kind from a fixed list, numbers).
Every error is a ``RequestError`` whose message is one sentence naming the field and what would be right.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

import torch

if TYPE_CHECKING:
    from ..core._model import Model

MAX_PROMPT_CHARS = 4000
MAX_NEW_TOKENS = 200
MAX_INTERVENTIONS = 32
KINDS = ("add", "scale", "ablate", "patch", "project_out")


class RequestError(Exception):
    """A request the server cannot use; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def obj(body: Any, what: str = "the request body") -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise RequestError(f"{what} must be a JSON object, not {_type(body)}")
    return body


def _type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


@overload
def text(
    body: Mapping[str, Any], key: str, *, required: Literal[True] = True, default: None = None
) -> str: ...
@overload
def text(body: Mapping[str, Any], key: str, *, required: bool, default: str | None = None) -> str | None: ...
def text(
    body: Mapping[str, Any], key: str, *, required: bool = True, default: str | None = None
) -> str | None:
    """The string at ``key``: required (a missing key or null is an error) or else ``default`` when absent."""
    value = body.get(key)
    if value is None:
        if required:
            raise RequestError(f"{key!r} is required: give a non-empty string")
        return default
    if not isinstance(value, str):
        raise RequestError(f"{key!r} must be a string, not {_type(value)}")
    if required and not value.strip():
        raise RequestError(f"{key!r} is empty: give some text")
    if len(value) > MAX_PROMPT_CHARS:
        raise RequestError(f"{key!r} has {len(value)} characters; the limit is {MAX_PROMPT_CHARS}")
    return value


@overload
def integer(body: Mapping[str, Any], key: str, default: int, lo: int, hi: int | None) -> int: ...
@overload
def integer(body: Mapping[str, Any], key: str, default: None, lo: int, hi: int | None) -> int | None: ...
def integer(body: Mapping[str, Any], key: str, default: int | None, lo: int, hi: int | None) -> int | None:
    """The integer at ``key`` within ``[lo, hi]``; ``default`` when the key is absent or null."""
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{key!r} must be an integer, not {_type(value)}")
    if value < lo or (hi is not None and value > hi):
        raise RequestError(f"{key!r} must be between {lo} and {hi}, not {value}")
    return value


def number(body: Mapping[str, Any], key: str, default: float, limit: float = 1e6) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"{key!r} must be a finite number, not {_type(value)}")
    if abs(value) > limit:
        raise RequestError(f"{key!r} must be between {-limit:g} and {limit:g}, not {value}")
    return float(value)


def int_list(value: Any, key: str) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise RequestError(f"{key!r} must be an integer or a list of integers, not {_type(value)}")
    return list(value)


def vector(value: Any, key: str = "vector") -> torch.Tensor:
    if not isinstance(value, list) or not value:
        raise RequestError(f"{key!r} must be a non-empty list of numbers, not {_type(value)}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise RequestError(f"{key!r} must hold finite numbers only")
    return torch.tensor(value, dtype=torch.float32)


def interventions(model: Model, spec: Any, vectors: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``[{"site", "kind", ...}, ...]`` -> ``{site: [tsi intervention, ...]}`` for ``model.run``.

    Kinds: ``add`` (``vector`` list or ``vector_name``, ``scale``), ``scale`` (``k``), ``ablate`` (``mode``
    zero|mean), ``patch`` (``source_prompt``: that prompt's activation at the site), ``project_out``
    (``vector`` or ``vector_name``). Each may carry ``positions`` and ``heads``.
    """
    import torch_shard_interpret as tsi

    if spec is None:
        return {}
    if not isinstance(spec, list):
        raise RequestError(f"'interventions' must be a list of objects, not {_type(spec)}")
    if len(spec) > MAX_INTERVENTIONS:
        raise RequestError(f"at most {MAX_INTERVENTIONS} interventions per request, not {len(spec)}")
    out: dict[str, list[Any]] = {}
    for i, item in enumerate(spec):
        item = obj(item, f"interventions[{i}]")
        site = item.get("site")
        if not isinstance(site, str) or not site:
            raise RequestError(f"interventions[{i}].site must be a site name such as 'blocks.1.resid_post'")
        model.resolve(site)  # unknown site -> SiteNotFoundError with the core's message
        kind = item.get("kind")
        if kind not in KINDS:
            raise RequestError(f"interventions[{i}].kind must be one of {', '.join(KINDS)}, not {kind!r}")
        positions = int_list(item.get("positions"), "positions")
        heads = int_list(item.get("heads"), "heads")
        if kind in ("add", "project_out"):
            vec = _vector_of(item, i, vectors)
            iv = (
                tsi.Add(vec, scale=number(item, "scale", 1.0), positions=positions, heads=heads)
                if kind == "add"
                else tsi.ProjectOut(vec, positions=positions, heads=heads)
            )
        elif kind == "scale":
            iv = tsi.Scale(number(item, "k", 0.0), positions=positions, heads=heads)
        elif kind == "ablate":
            mode = item.get("mode", "zero")
            if mode not in ("zero", "mean"):
                raise RequestError(f"interventions[{i}].mode must be 'zero' or 'mean', not {mode!r}")
            iv = tsi.Ablate(mode, positions=positions, heads=heads)
        else:  # patch
            source = text(item, "source_prompt")
            cache = model.run(source, cache=site, return_logits=False).cache
            iv = tsi.Patch(cache, positions=positions, heads=heads)
        out.setdefault(site, []).append(iv)
    return out


def _vector_of(item: Mapping[str, Any], i: int, vectors: Mapping[str, Any]) -> torch.Tensor:
    name = item.get("vector_name")
    if name is not None:
        if not isinstance(name, str) or name not in vectors:
            known = ", ".join(sorted(vectors)) or "none"
            raise RequestError(
                f"interventions[{i}].vector_name {name!r} is not a known vector (known: {known})"
            )
        return vectors[name].vector
    if "vector" not in item:
        raise RequestError(f"interventions[{i}] needs 'vector' (a list of numbers) or 'vector_name'")
    return vector(item["vector"], f"interventions[{i}].vector")
