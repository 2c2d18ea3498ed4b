"""Input saliency: gradients of one logit with respect to the input embeddings, one score per token."""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import torch

from ..core._errors import InputError
from ..core._interventions import Set
from ..core._model import Model
from ..core._result import logits_of
from ..lens._logit import as_token_id

METHODS = ("grad_x_input", "grad_norm")
FIRST_ORDER_TOL = 0.5
"""Largest relative miss of ``sum(grad_x_input)`` against ``f(input) - f(zero embeddings)`` before warning."""
_warned: weakref.WeakSet = weakref.WeakSet()  # the modules already warned about (one warning per model)


class FirstOrderWarning(UserWarning):
    """Gradient x input does not add up: its sum is the first-order estimate of ``f(input) - f(zero
    embeddings)`` and misses it by more than half, so the model is far from linear between the two (a
    saturated gradient, or a pre-norm model whose RMSNorm/LayerNorm makes each token's effect nearly
    scale-invariant, so ``grad . embed ~ 0`` by Euler's theorem). The per-token scores do not rank what the
    prediction depends on; ``integrated_gradients`` integrates along the path and checks completeness."""


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

    if method != "grad_x_input":
        return saliency_scores(model, prompt, scalar)[method]
    scores, f_input, embed = _scores_and_value(model, prompt, scalar)
    if model.module not in _warned:
        _check_first_order(model, prompt, scalar, scores["grad_x_input"], f_input, embed)
    return scores["grad_x_input"]


def _check_first_order(
    model: Model, prompt: Any, scalar: Any, gxi: torch.Tensor, f_input: float, embed
) -> None:
    """Warn (once per model) when ``sum(gxi)`` misses ``f(input) - f(zero embeddings)`` by over half."""
    with torch.no_grad():
        f_zero = float(scalar(model.run(prompt, interventions={"embed": Set(torch.zeros_like(embed))})))
    delta, estimate = f_input - f_zero, float(gxi.double().sum())
    if abs(estimate - delta) <= FIRST_ORDER_TOL * max(abs(delta), 1e-6):
        return
    _warned.add(model.module)
    warnings.warn(
        f"saliency: gradient x input sums to {estimate:+.4f}, but the explained logit changes by {delta:+.4f} "
        "between zero embeddings and this input, so the first-order scores do not show what the prediction "
        "depends on (a saturated gradient, or a pre-norm model whose norms make each token's effect nearly "
        "scale-invariant). Use tsi.attribution.integrated_gradients(model, prompt, target=...), which checks "
        "that its attributions add up. (Warned once per model.)",
        FirstOrderWarning,
        stacklevel=3,
    )


def saliency_scores(model: Model, prompt: Any, scalar: Any) -> dict[str, torch.Tensor]:
    """Both saliency scores ``{method: [pos]}`` from one gradient run of ``scalar(run) -> 0-d tensor``."""
    return _scores_and_value(model, prompt, scalar)[0]


def _scores_and_value(
    model: Model, prompt: Any, scalar: Any
) -> tuple[dict[str, torch.Tensor], float, torch.Tensor]:
    """``saliency_scores`` plus the value of ``scalar`` on the input and the ``embed`` activation."""
    value: list[float] = []

    def keep(r):
        out = scalar(r)
        value.append(float(out.detach()))
        return out

    run = model.run(prompt, cache="embed", grad=keep)
    grad = run.grads["embed"][0].float()  # [pos, d_model]
    embed = run.cache["embed"][0].float()  # [pos, d_model]
    return (
        {"grad_x_input": (grad * embed).sum(-1).cpu(), "grad_norm": grad.norm(dim=-1).cpu()},
        value[-1],
        run.cache["embed"],
    )
