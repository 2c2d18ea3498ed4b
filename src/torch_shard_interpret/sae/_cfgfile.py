"""``cfg.json``: read it strictly and check every field we use for its type before anything is built.

``read_cfg`` returns the JSON object of the file, or raises an ``SAEError`` that names the file and, for a
wrong-typed field, the field and what it should be. Sizes are not trusted here: ``_plan`` compares them with
the safetensors header.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ._config import SAEError

MAX_CFG = 2**20
"""Largest cfg.json read (bytes); SAELens configs are a few kilobytes."""

_INTS = ("d_in", "d_sae")
_OPTIONAL_INTS = ("d_out", "k", "aux_k", "tsi_format")
_BOOLS = ("apply_b_dec_to_input", "transcoder", "rescale_acts_by_decoder_norm", "skip")
_STRINGS = (
    "architecture",
    "kind",
    "activation_fn_str",
    "activation_fn",
    "dtype",
    "normalize_activations",
    "reshape_activations",
    "hook_name",
    "hook_name_out",
    "hook_point",
    "model_name",
)
_NUMBERS = (
    "l1_coefficient",
    "l0_coefficient",
    "jumprelu_bandwidth",
    "jumprelu_init_threshold",
    "aux_coefficient",
    "norm_scaling_factor",
    "scaling_factor",
)
_DICTS = ("metadata", "activation_fn_kwargs")
_META_STRINGS = ("hook_name", "hook_name_out", "hook_point", "model_name", "sae_lens_version")


def read_cfg(path: Path) -> dict[str, Any]:
    """The checked JSON object of ``path`` (a ``cfg.json``)."""
    where = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_CFG:
            raise SAEError(f"{where} is {size} bytes; a cfg.json is a small JSON object (at most {MAX_CFG})")
        data = path.read_bytes()
    except OSError as exc:
        raise SAEError(f"cannot read {where}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SAEError(
            f"{where} is binary, not a JSON text; it should hold the SAE's config object"
        ) from None
    try:
        raw = json.loads(text)
    except RecursionError:
        raise SAEError(f"{where} is nested too deeply; it should be a flat JSON object") from None
    except ValueError as exc:
        raise SAEError(f"{where} is not valid JSON ({exc}); it should hold the SAE's config object") from None
    if not isinstance(raw, dict):
        raise SAEError(
            f"{where} holds a JSON {_json_type(raw)}, not an object; it should be "
            '{"d_in": ..., "d_sae": ..., "architecture": ...}'
        )
    check_fields(raw, where)
    return raw


def check_fields(raw: dict[str, Any], where: str) -> None:
    """Raise an ``SAEError`` naming the first field of ``raw`` (the object of the file ``where``) of the wrong type."""
    for key in _INTS:
        if key not in raw:
            raise SAEError(f"{where} lacks the field {key!r}; it must give the SAE's sizes d_in and d_sae")
        _int(raw, key, where)
    for key in _OPTIONAL_INTS:
        if raw.get(key) is not None:
            _int(raw, key, where)
    for key in _BOOLS:
        if raw.get(key) is not None and not isinstance(raw[key], bool):
            _wrong(where, key, raw[key], "true or false")
    for key in _STRINGS:
        if raw.get(key) is not None and not isinstance(raw[key], str):
            _wrong(where, key, raw[key], "a string")
    for key in _NUMBERS:
        value = raw.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
        ):
            _wrong(where, key, value, "a finite number")
    for key in _DICTS:
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            _wrong(where, key, raw[key], "a JSON object")
    meta = raw.get("metadata") or {}
    for key in _META_STRINGS:
        if meta.get(key) is not None and not isinstance(meta[key], str):
            _wrong(where, f"metadata.{key}", meta[key], "a string")
    kwargs = raw.get("activation_fn_kwargs") or {}
    if kwargs.get("k") is not None:
        _int(kwargs, "k", where, "activation_fn_kwargs.k")
    for key in ("norm_scaling_factor", "scaling_factor"):
        if raw.get(key) is not None and not raw[key] > 0:
            _wrong(where, key, raw[key], "a positive number")


def _int(obj: dict[str, Any], key: str, where: str, label: str | None = None) -> None:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _wrong(where, label or key, value, "a positive integer")


def _wrong(where: str, key: str, value: Any, expected: str) -> None:
    shown = json.dumps(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise SAEError(f"{where}: field {key!r} is {shown} ({_json_type(value)}), but it must be {expected}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
