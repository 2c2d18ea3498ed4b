"""Input saliency: gradients of one logit with respect to the input embeddings, one score per token."""

from __future__ import annotations

from typing import Any

import torch

from ..core._errors import InputError
from ..core._model import Model
from ..core._result import logits_of
from ..lens._logit import as_token_id

METHODS = ("grad_x_input", "grad_norm")


def saliency(
    model: Model,
    prompt: Any,
    target: int | str | None = None,
    method: str = "grad_x_input",
    *,
    baseline: int | str | None = None,
    position: int = -1,
) -> torch.Tensor:
    """Per-token saliency ``[pos]`` (float32, CPU) of ``logit(target)`` at ``position``.

    Args:
        model: a ``tsi.Model`` with an ``embed`` site.
        prompt: one prompt (text or ``[1, pos]`` token ids).
        target: a one-token string or id; ``None`` uses the model's top prediction at ``position``.
        method: ``"grad_x_input"``: ``sum_d grad[p, d] * embed[p, d]`` (signed, the first-order estimate of
            how much the logit would drop if that token's embedding were zeroed); ``"grad_norm"``:
            ``||grad[p]||_2`` (unsigned sensitivity).
        baseline: optional token; the scalar becomes ``logit(target) - logit(baseline)``.
        position: the position whose prediction is explained (default the last).

    The gradient is taken at the ``embed`` site: token (plus learned position) embeddings, as the first
    block sees them.
    """
    if method not in METHODS:
        raise InputError(f"unknown saliency method {method!r}; choose one of {', '.join(METHODS)}")
    target_id = as_token_id(model, target)
    baseline_id = as_token_id(model, baseline, "baseline")
    if target_id is None:
        target_id = int(logits_of(model.run(prompt), "saliency")[0, position].argmax())

    def scalar(r):
        if r.logits.shape[0] != 1:
            raise InputError(f"saliency takes one prompt, not a batch of {r.logits.shape[0]}")
        row = r.logits[0, position]
        return row[target_id] - (row[baseline_id] if baseline_id is not None else 0.0)

    return saliency_scores(model, prompt, scalar)[method]


def saliency_scores(model: Model, prompt: Any, scalar: Any) -> dict[str, torch.Tensor]:
    """Both saliency scores ``{method: [pos]}`` from one gradient run of ``scalar(run) -> 0-d tensor``."""
    run = model.run(prompt, cache="embed", grad=scalar)
    grad = run.grads["embed"][0].float()  # [pos, d_model]
    embed = run.cache["embed"][0].float()  # [pos, d_model]
    return {"grad_x_input": (grad * embed).sum(-1).cpu(), "grad_norm": grad.norm(dim=-1).cpu()}
