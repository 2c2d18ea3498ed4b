"""The residual streams a tuned lens trains and is evaluated on: every real token of some texts, per block.

``harvest_residuals(model, texts)`` cuts the texts into windows of at most ``context`` tokens, runs the
model on them (``cache="blocks.*.resid_post"``, no gradient) and returns ``[n_layers, n_tokens, d_model]``
float32, padding dropped. The small helpers name the blocks and check the inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..core._errors import InputError, TsiError
from ..core._model import Model
from ..core._site import natural_key


def model_name_of(model: Model) -> str | None:
    name = getattr(model, "name", None)
    if isinstance(name, str) and name:
        return name
    hf = getattr(model.module, "config", None)
    path = getattr(hf, "name_or_path", None) or getattr(hf, "_name_or_path", None)
    return Path(path).name if path else None


def layer_names(model: Model) -> list[str]:
    try:
        names = sorted(model.sites("blocks.*.resid_post"), key=natural_key)
    except TsiError:
        names = []
    if not names:
        raise TsiError(
            "the tuned lens needs blocks.*.resid_post sites, which this model's adapter does not name; "
            "wrap a model with a known architecture"
        )
    return names


def check_texts(texts: Any, what: str = "texts") -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    texts = [t for t in (texts or []) if isinstance(t, str) and t.strip()]
    if not texts:
        raise InputError(f"{what} must be a non-empty list of non-empty strings")
    return texts


def token_windows(model: Model, texts: list[str], context: int) -> list[list[int]]:
    """Token ids of ``texts``, split into windows of at most ``context`` tokens (windows of one token dropped)."""
    if model.tokenizer is None:
        raise InputError("the tuned lens trains on text, so the model needs a tokenizer")
    out: list[list[int]] = []
    for text in texts:
        ids = model.to_tokens(text)[0].tolist()
        out.extend(ids[s : s + context] for s in range(0, len(ids), context) if len(ids[s : s + context]) > 1)
    if not out:
        raise InputError("the texts tokenize to nothing usable; give sentences of at least two tokens")
    return out


@torch.no_grad()
def harvest_residuals(
    model: Model, texts: Sequence[str], *, context: int = 128, max_tokens: int | None = None, seqs: int = 8
) -> torch.Tensor:
    """The residual streams ``[n_layers, n_tokens, d_model]`` (float32) of every real (non-padding) token of
    ``texts``, cut into windows of ``context`` tokens and run ``seqs`` windows at a time."""
    names = layer_names(model)
    windows = token_windows(model, check_texts(texts), context)
    pad = model.tokenizer.pad_token_id or 0
    parts: list[torch.Tensor] = []
    total = 0
    for start in range(0, len(windows), seqs):
        batch = windows[start : start + seqs]
        width = max(len(w) for w in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, w in enumerate(batch):  # right padding: real tokens keep positions 0..len-1
            ids[r, : len(w)] = torch.tensor(w)
            mask[r, : len(w)] = 1
        run = model.run(
            {"input_ids": ids, "attention_mask": mask}, cache="blocks.*.resid_post", return_logits=False
        )
        keep = mask.bool().to(run.cache[names[0]].device)
        stacked = torch.stack([run.cache[n][keep] for n in names]).float()  # [n_layers, tokens, d_model]
        parts.append(stacked)
        total += stacked.shape[1]
        if max_tokens is not None and total >= max_tokens:
            break
    resid = torch.cat(parts, dim=1)
    return resid[:, :max_tokens] if max_tokens is not None else resid
