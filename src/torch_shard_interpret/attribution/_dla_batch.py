"""Direct logit attribution over a batch of prompts: one padded forward per ``batch_size`` prompts.

Prompts are padded on the right, so every real token keeps its position and (the attention being causal)
its activations: each result equals ``direct_logit_attribution`` of that prompt alone, up to float
rounding. ``position`` counts within each prompt's own tokens (``-1``: its last real token).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..core._errors import InputError
from ..core._model import Model
from ..lens._logit import as_token_id, readout_modules
from ._dla import DLA_SITES, DLAResult, dla_from_run


def dla_batch(
    model: Model,
    prompts: Sequence[str] | torch.Tensor,
    target: int | str | Sequence[int | str] | None = None,
    baseline: int | str | Sequence[int | str] | None = None,
    *,
    position: int = -1,
    layer: int | None = None,
    batch_size: int = 8,
) -> list[DLAResult]:
    """``direct_logit_attribution`` of each prompt, run ``batch_size`` prompts to a forward.

    Args:
        model: a ``tsi.Model`` whose adapter names ``final_norm`` and ``logits``.
        prompts: texts (the model needs a tokenizer), or ``[batch, pos]`` token ids without padding.
        target: one token for every prompt, or one per prompt; ``None``: each prompt's top prediction.
        baseline: optional token(s) subtracted, the same way.
        position: the position explained within each prompt (negative counts from its last real token).
        layer: as in ``direct_logit_attribution`` (``None``: the model's output logit).
        batch_size: prompts per forward pass.

    Returns:
        One ``DLAResult`` per prompt, in order.
    """
    rows = _token_rows(model, prompts)
    targets = _per_prompt(model, target, len(rows), "target")
    baselines = _per_prompt(model, baseline, len(rows), "baseline")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, not {batch_size!r}")
    readout_modules(model)
    out: list[DLAResult] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(r) for r in chunk)
        pad = getattr(model.tokenizer, "pad_token_id", None) or 0
        ids = torch.full((len(chunk), width), int(pad), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, toks in enumerate(chunk):  # right padding: real tokens keep positions 0..len-1
            ids[r, : len(toks)] = torch.tensor(toks)
            mask[r, : len(toks)] = 1
        run = model.run({"input_ids": ids, "attention_mask": mask}, cache=list(DLA_SITES))
        for r, toks in enumerate(chunk):
            i = start + r
            out.append(
                dla_from_run(
                    model,
                    run,
                    target=targets[i],
                    baseline=baselines[i],
                    position=position,
                    layer=layer,
                    row=r,
                    n_tokens=len(toks),
                )
            )
    return out


def _token_rows(model: Model, prompts: Any) -> list[list[int]]:
    if torch.is_tensor(prompts):
        if prompts.dim() != 2 or prompts.shape[0] == 0 or prompts.shape[1] == 0:
            raise InputError(
                f"token-id prompts must be a non-empty [batch, pos] tensor, not {tuple(prompts.shape)}"
            )
        return [[int(t) for t in row] for row in prompts]
    if isinstance(prompts, str):
        prompts = [prompts]
    texts = list(prompts) if isinstance(prompts, Sequence) else []
    if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
        raise InputError(
            "prompts must be a non-empty list of non-empty strings (or a [batch, pos] id tensor)"
        )
    return [model.to_tokens(t)[0].tolist() for t in texts]


def _per_prompt(model: Model, token: Any, n: int, what: str) -> list[int | None]:
    if token is None or isinstance(token, (int, str)):
        tid = as_token_id(model, token, what)
        return [tid] * n
    tokens = list(token)
    if len(tokens) != n:
        raise InputError(
            f"{what} has {len(tokens)} entries for {n} prompts; give one token or one per prompt"
        )
    return [as_token_id(model, t, what) for t in tokens]
