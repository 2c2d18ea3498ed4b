# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false
"""Token lookup, the one implementation: ids to readable strings, and a one-token string to its id.

``Model.str_tokens``, ``Model.to_str_tokens``, ``Model.token_id`` and ``RunResult.str_tokens`` call these;
techniques call the Model's methods, or these functions where they hold only a tokenizer (a saved result).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ._errors import InputError


def readable(tokenizer: Any, piece: str) -> str:
    """One token piece as text (``"Ġcat"`` -> ``" cat"``); the piece itself when it cannot be decoded alone."""
    try:
        return tokenizer.convert_tokens_to_string([piece])
    except Exception:  # noqa: BLE001 - some tokenizers cannot decode single pieces
        return piece


def str_tokens(tokenizer: Any, ids: torch.Tensor | Sequence[int]) -> list[str]:
    """Readable strings of token ids (``[pos]`` or ``[1, pos]``); the ids as text without a tokenizer.
    An id the tokenizer does not know (a model vocabulary padded past the tokenizer's) reads as ``""``."""
    flat = [int(t) for t in (ids.reshape(-1).tolist() if torch.is_tensor(ids) else ids)]
    if tokenizer is None:
        return [str(t) for t in flat]
    convert = getattr(tokenizer, "convert_ids_to_tokens", None)
    if convert is None:  # a minimal tokenizer (only __call__, maybe decode): its decode, or the ids as text
        decode = getattr(tokenizer, "decode", None)
        return [decode([t]) if decode is not None else str(t) for t in flat]
    pieces: list[str | None] = convert(flat)
    return ["" if piece is None else readable(tokenizer, piece) for piece in pieces]


def token_id(tokenizer: Any, token: str, what: str = "token") -> int:
    """The id of ``token`` (e.g. ``" Paris"``), which must be exactly one token; ``what`` names it in errors."""
    if not token:
        raise InputError(f"the {what} is empty; give one token such as ' Paris'")
    if tokenizer is None:
        raise InputError(f"a {what} given as text needs a tokenizer; pass its token id instead")
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise InputError(
            f"the {what} {token!r} is {len(ids)} tokens, not one; choose a {what} that is a single token, "
            "such as ' Paris'"
        )
    return int(ids[0])
