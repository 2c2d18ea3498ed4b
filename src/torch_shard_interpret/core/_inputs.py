# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""Turn what a user passes to ``run``/``generate`` into the call of the wrapped module."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._errors import InputError


@dataclass
class Prepared:
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    tokens: torch.Tensor | None  # [batch, pos] token ids when the input was text or ids
    attention_mask: torch.Tensor | None


def is_hf(module: nn.Module) -> bool:
    return hasattr(getattr(module, "config", None), "model_type") and hasattr(module, "get_input_embeddings")


def input_device(module: nn.Module) -> torch.device:
    """Where a Hugging Face model wants its inputs: the device of its input embedding."""
    try:
        weight = getattr(module, "get_input_embeddings")().weight  # noqa: B009 - an HF method, Any to pyright
        if weight.device.type != "meta":
            return weight.device
    except (AttributeError, NotImplementedError):
        pass
    for p in module.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")


def tokenize(
    tokenizer: Any, text: str | Sequence[str], padding_side: str | None = None, prepend_bos: bool = False
) -> dict[str, torch.Tensor]:
    if tokenizer is None:
        raise InputError(
            "text input needs a tokenizer; pass tokenizer= to tsi.wrap, or give token ids as a tensor"
        )
    texts: list[Any] = [text] if isinstance(text, str) else list(text)
    if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
        raise InputError("the prompt is empty; give at least one non-blank string")
    if prepend_bos:
        return _with_bos(tokenizer, texts, padding_side)
    kwargs: dict[str, Any] = {"return_tensors": "pt", "padding": len(texts) > 1}
    if padding_side is not None and len(texts) > 1:
        kwargs["padding_side"] = padding_side
    enc = tokenizer(texts, **kwargs)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def _with_bos(tokenizer: Any, texts: list[str], padding_side: str | None) -> dict[str, torch.Tensor]:
    """Tokenize ``texts`` so that each row starts with the BOS token (added when the tokenizer did not)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise InputError("prepend_bos=True needs a tokenizer with a BOS token; this tokenizer has none")
    rows = [list(r) for r in tokenizer(texts)["input_ids"]]
    rows = [r if r and r[0] == bos else [bos, *r] for r in rows]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else bos
    left = (padding_side or getattr(tokenizer, "padding_side", "right")) == "left"
    ids = torch.full((len(rows), width), int(pad), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        cols = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, cols] = torch.tensor(r, dtype=torch.long)
        mask[i, cols] = 1
    return {"input_ids": ids, "attention_mask": mask}


def prepare(
    module: nn.Module,
    tokenizer: Any,
    inputs: Any,
    model_kwargs: dict[str, Any],
    n_ctx: int | None,
    padding_side: str | None = None,
    hf: bool | None = None,
    prepend_bos: bool = False,
) -> Prepared:
    """Text, token ids, a dict of model kwargs or any tensor(s) -> the call of ``module``.

    Hugging Face inputs are moved to the device of the input embedding. Tensors for any other module are
    passed as they are, exactly as a plain call would.
    """
    hf = is_hf(module) if hf is None else hf
    if not hf and torch.is_tensor(inputs) and not model_kwargs:  # the fast path of a plain module
        return Prepared((inputs,), {}, None, None)
    kwargs = dict(model_kwargs)
    args: tuple[Any, ...] = ()
    if isinstance(inputs, str) or (
        isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, str) for t in inputs)
    ):
        kwargs.update(tokenize(tokenizer, inputs, padding_side, prepend_bos))
    elif isinstance(inputs, (list, tuple)) and not inputs:
        raise InputError("the input is empty; give a prompt, a list of prompts or a tensor")
    elif isinstance(inputs, Mapping):
        kwargs.update(inputs)
    elif torch.is_tensor(inputs):
        if hf and not inputs.is_floating_point():
            ids = inputs if inputs.ndim == 2 else inputs.unsqueeze(0)
            if ids.shape[-1] == 0:
                raise InputError("the token tensor is empty; give at least one token")
            kwargs["input_ids"] = ids
        else:
            args = (inputs,)
    elif isinstance(inputs, tuple):
        args = inputs
    elif inputs is None:
        if not kwargs:
            raise InputError("run() needs inputs: a prompt, token ids, a tensor or model keyword arguments")
    else:
        raise InputError(
            f"cannot use a {type(inputs).__name__} as model input; give a string, a list of strings, a tensor or a dict"
        )
    ids = kwargs.get("input_ids")
    if ids is not None and n_ctx is not None and ids.shape[-1] > n_ctx:
        raise InputError(
            f"the input has {ids.shape[-1]} tokens but the model's context window is {n_ctx}; shorten the prompt"
        )
    if hf and torch.is_tensor(ids):
        check_vocab(module, ids)
    if hf:
        device = input_device(module)
        kwargs = {
            k: v.to(device) if torch.is_tensor(v) and v.device != device else v for k, v in kwargs.items()
        }
    return Prepared(args, kwargs, kwargs.get("input_ids"), kwargs.get("attention_mask"))


def check_vocab(module: nn.Module, ids: torch.Tensor) -> None:
    """Raise ``InputError`` when a token id is outside the input embedding's table."""
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise InputError(f"input_ids must be integer token ids, not a {ids.dtype} tensor")
    try:
        size = getattr(module, "get_input_embeddings")().num_embeddings  # noqa: B009
    except (AttributeError, NotImplementedError):
        return
    if not isinstance(size, int) or ids.numel() == 0:
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= size:
        bad = high if high >= size else low
        raise InputError(
            f"token id {bad} at input_ids (the embed site) is outside the vocabulary of {size} tokens "
            f"(ids 0..{size - 1}); check the tokenizer matches the model"
        )


def output_logits(output: Any) -> torch.Tensor | None:
    """The logits (or main tensor) of a model output."""
    if torch.is_tensor(output):
        return output
    for key in ("logits", "last_hidden_state"):
        val = getattr(output, key, None) if not isinstance(output, Mapping) else output.get(key)
        if torch.is_tensor(val):
            return val
    if isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
        return output[0]
    return None
