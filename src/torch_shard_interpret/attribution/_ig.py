"""Integrated gradients (Sundararajan et al. 2017) on the input embeddings.

For an input embedding ``x`` ``[pos, d_model]`` (the ``embed`` site), a baseline ``x'`` and a scalar
``f`` (one logit, or ``metric(logits)``), the attribution of dimension ``d`` at position ``p`` is

    IG[p, d] = (x - x')[p, d] * integral_0^1 df/dx[p, d] (x' + a (x - x')) da

and completeness says ``sum(IG) == f(x) - f(x')``. The integral is a quadrature over ``steps`` points:
``method="gausslegendre"`` (default; exact for polynomials of degree ``2 * steps - 1`` in ``a``, so very
accurate on smooth paths) or ``"trapezoid"`` (``steps`` intervals, ``steps + 1`` points, both ends
included) or ``"riemann_middle"``. The weights sum to one in every rule, so a model that is linear in its
embeddings gets ``gradient x (input - baseline)`` exactly.

The interpolated embeddings go in through the ``embed`` site with ``tsi.Set`` (so positional embeddings
and everything else of the real model stay as they are), ``batch_size`` interpolation points per forward
pass as one batch, and the gradients come from the core's ``grad=``. ``IGResult.completeness_error``
reports how well the quadrature did; ``passes(tol)`` checks it relative to ``f(x) - f(x')``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core._errors import InputError
from ..core._interventions import Set
from ..core._model import Model
from ..core._result import jsonable, logits_of
from ..lens._logit import as_token_id

METHODS = ("gausslegendre", "trapezoid", "riemann_middle")
DEFAULT_TOL = 0.05
"""Relative completeness error the default call refines down to."""
DEFAULT_MAX_STEPS = 256


class CompletenessWarning(UserWarning):
    """Integrated gradients did not reach its completeness tolerance: the attributions do not add up."""


class BaselineWarning(UserWarning):
    """The baseline is not neutral: the model already predicts the explained target there, so IG can only
    attribute the small rest ``f(input) - f(baseline)`` and its ranking of the inputs is not meaningful."""


BASELINES = ("zero", "pad")


@dataclass
class IGResult:
    """Integrated-gradients attributions of one prompt. See the module docstring for the definition."""

    attributions: torch.Tensor
    """``[pos]`` attribution per input token (``per_dim`` summed over ``d_model``)."""
    per_dim: torch.Tensor
    """``[pos, d_model]`` attribution per embedding dimension."""
    f_input: float
    """``f`` at the real input."""
    f_baseline: float
    """``f`` at the baseline."""
    str_tokens: list[str] = field(default_factory=list)
    target: int | None = None
    """The token whose logit is ``f`` (None when a ``metric`` was given)."""
    target_str: str | None = None
    position: int = -1
    steps: int = 0
    method: str = "gausslegendre"
    baseline: str = "zero"
    """``"zero"``, ``"pad"`` or ``"tensor"``."""
    warp: int = 1
    """The points sit at ``alpha = t**warp`` (see ``quadrature``)."""
    kept: list[int] = field(default_factory=list)
    """The positions held at the input (the ``keep`` used; they get zero attribution)."""

    @property
    def delta(self) -> float:
        """``f(input) - f(baseline)``: what the attributions should add up to."""
        return self.f_input - self.f_baseline

    @property
    def completeness_error(self) -> float:
        """``sum(attributions) - (f(input) - f(baseline))``."""
        return float(self.attributions.sum()) - self.delta

    @property
    def relative_error(self) -> float:
        """``|completeness_error| / |f(input) - f(baseline)|``."""
        return abs(self.completeness_error) / max(abs(self.delta), 1e-12)

    def passes(self, tol: float = 0.05) -> bool:
        """True when the relative completeness error is at most ``tol`` (more ``steps`` lowers it)."""
        return self.relative_error <= tol

    @property
    def label(self) -> str:
        return f"logit({self.target_str!r})" if self.target_str is not None else "metric"

    def summary(self) -> str:
        """One line: the check and the top tokens."""
        order = self.attributions.abs().argsort(descending=True)[:3].tolist()
        top = ", ".join(f"{self.str_tokens[i]!r}·{i} {float(self.attributions[i]):+.3f}" for i in order)
        return (
            f"IG of {self.label}: f(input) - f(baseline) = {self.delta:+.4f}, sum = "
            f"{float(self.attributions.sum()):+.4f}, completeness error {self.completeness_error:+.2e} "
            f"({100 * self.relative_error:.2f}%, {self.steps} {self.method} steps); top: {top}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: every field, plus the completeness check (``delta``, ``completeness_error``,
        ``relative_error``, ``passes`` at 5%) and the ``label``."""
        return jsonable({
            "label": self.label, "tokens": self.str_tokens, "attributions": self.attributions,
            "per_dim": self.per_dim, "f_input": self.f_input, "f_baseline": self.f_baseline,
            "delta": self.delta, "completeness_error": self.completeness_error,
            "relative_error": self.relative_error, "passes": self.passes(), "target": self.target,
            "target_str": self.target_str, "position": self.position, "steps": self.steps,
            "method": self.method, "baseline": self.baseline, "warp": self.warp, "kept": self.kept,
        })  # fmt: skip

    def to_html(self) -> str:
        """A self-contained HTML page: the prompt's tokens coloured by attribution (red raises ``f``)."""
        from .. import _render as svg
        from .._render import esc, standalone

        values = self.attributions.tolist()
        vmax = max((abs(v) for v in values), default=0.0) or 1.0
        titles = [f"position {i}: IG {v:+.4f}" for i, v in enumerate(values)]
        chips = svg.colored_tokens(self.str_tokens, values, vmax=vmax, titles=titles)
        check = "passes" if self.passes() else "fails"
        body = (
            f"<h1>Integrated gradients</h1><p>Attribution of {esc(self.label)} to each input embedding "
            f"(baseline: {esc(self.baseline)}, {self.steps} {esc(self.method)} steps). Red raises it, blue lowers it.</p>"
            f"<div>{chips}</div><p>Completeness: f(input) − f(baseline) = {self.delta:+.4f}; sum of attributions = "
            f"{float(self.attributions.sum()):+.4f}; error {self.completeness_error:+.2e} "
            f"({100 * self.relative_error:.2f}%, {check} the 5% check).</p>"
        )
        return standalone("Integrated gradients", body)

    def _repr_html_(self) -> str:
        return self.to_html()


def quadrature(steps: int, method: str = "gausslegendre", warp: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alphas, weights)`` of a rule on ``[0, 1]`` (float64; the weights sum to one).

    ``warp=p > 1`` substitutes ``alpha = t**p`` (weights times ``p * t**(p - 1)``), which crowds the points
    towards ``alpha = 0``; the weights still sum to one exactly for Gauss-Legendre (``p <= 2 * steps``)."""
    alphas, weights = _rule(steps, method)
    if warp != 1:
        if not isinstance(warp, int) or warp < 1:
            raise InputError(f"warp must be a positive integer, not {warp!r}")
        t = alphas
        alphas, weights = t**warp, weights * warp * t ** (warp - 1)
    return alphas, weights


def _rule(steps: int, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    if method not in METHODS:
        raise InputError(f"unknown integration method {method!r}; choose one of {', '.join(METHODS)}")
    if steps < 1:
        raise InputError(f"steps must be at least 1, not {steps}")
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        return torch.from_numpy((x + 1) / 2), torch.from_numpy(w / 2)
    if method == "trapezoid":
        alphas = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        weights = torch.full((steps + 1,), 1.0 / steps, dtype=torch.float64)
        weights[0] = weights[-1] = 0.5 / steps
        return alphas, weights
    alphas = (torch.arange(steps, dtype=torch.float64) + 0.5) / steps
    return alphas, torch.full((steps,), 1.0 / steps, dtype=torch.float64)


def integrated_gradients(
    model: Model,
    prompt: Any,
    target: int | str | None = None,
    *,
    baseline: str | torch.Tensor | None = None,
    steps: int = 32,
    batch_size: int = 8,
    metric: Callable[[torch.Tensor], torch.Tensor] | None = None,
    position: int = -1,
    method: str = "trapezoid",
    warp: int | None = None,
    keep: Sequence[int] | None = None,
    site: str = "embed",
    tol: float | None = DEFAULT_TOL,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> IGResult:
    """Integrated gradients of ``logit(target)`` at ``position`` (or of ``metric``) on the input embeddings.

    Args:
        model: a ``tsi.Model`` with an ``embed`` site (or pass ``site=`` a raw site such as ``"emb:output"``).
        prompt: one prompt (text or ``[1, pos]`` token ids).
        target: a one-token string (``" Paris"``) or id; ``None`` uses the model's top prediction at
            ``position``. Ignored when ``metric`` is given.
        baseline: ``None``/``"zero"`` (zero embeddings), ``"pad"`` (the embedding of the pad token at every
            position, through the real embedding layer) or a tensor ``[pos, d_model]`` (or ``[1, pos, d_model]``).
        steps: quadrature points (``trapezoid``: intervals).
        batch_size: interpolation points per forward pass (bounds memory).
        metric: ``metric(logits) -> [batch]``; ``f`` is then its value instead of one logit.
        position: the position whose prediction is explained (default the last).
        method: ``"trapezoid"`` (default: its grids nest, so refining reuses every point computed),
            ``"gausslegendre"`` or ``"riemann_middle"``.
        warp: place the points at ``alpha = t**warp`` (see ``quadrature``). Default: 3 for the zero baseline,
            1 otherwise. Why: a model that normalises its input (RMSNorm/LayerNorm in the first block) is
            scale-invariant in ``alpha`` except very close to 0, where ``|alpha x|`` drops below the norm's
            ``eps``; ``f`` then changes abruptly near ``alpha = 0`` and evenly spread points miss it.
        keep: positions whose baseline is the input itself (they get zero attribution). Default (None):
            ``[0]`` for a prompt of two or more tokens unless ``baseline`` is a tensor, ``[]`` otherwise.
            Why: models use the first token as an attention sink (SmolLM2, no BOS); moving that embedding
            makes ``f`` along the path so rough that no affordable quadrature integrates it (measured on the
            embedded model: completeness errors of 6x to 300x of ``f(input) - f(baseline)`` at 32 points).
            ``keep=[]`` attributes to the first token too. If the default baseline with ``[0]`` kept already
            makes the model predict the target (not neutral: on the trojan task, ``BOS`` then nothing is
            answered with the target) and moving every position does not, nothing is kept (``IGResult.kept``).
            A baseline that still predicts the target raises a ``BaselineWarning`` naming the fix.
        site: where the embeddings are interpolated (default ``"embed"``).
        tol: completeness is checked after the quadrature: while ``|sum(IG) - (f(x) - f(x'))|`` is above
            ``tol * |f(x) - f(x')|`` the number of steps doubles (trapezoid: only the new midpoints are
            computed), up to ``max_steps``; if it still fails, a ``CompletenessWarning`` says what to change.
            ``tol=None`` turns the check off (exactly ``steps`` points).
        max_steps: the most steps the refinement may reach (default 256).

    Returns:
        ``IGResult`` with ``attributions`` ``[pos]``, ``per_dim`` ``[pos, d_model]``, ``f_input``,
        ``f_baseline`` and ``completeness_error``.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, not {batch_size}")
    ids = _token_ids(model, prompt)  # [1, pos]
    first = model.run(ids, cache=site)
    x = first.cache[site]  # [1, pos, d_model]
    if x.shape[0] != 1:
        raise InputError(f"integrated_gradients takes one prompt, not a batch of {x.shape[0]}")
    n_pos = x.shape[1]
    if not -n_pos <= position < n_pos:
        raise InputError(f"position {position} is outside the prompt of {n_pos} tokens")
    first_logits = logits_of(first, "integrated_gradients")  # [1, pos, d_vocab]
    target_id = None
    if metric is None:
        target_id = as_token_id(model, target)
        if target_id is None:
            target_id = int(first_logits[0, position].argmax())
    f = _scalar_fn(metric, target_id, position)
    with torch.no_grad():
        f_input = float(_values(f, first_logits, 1)[0])
    moved, base_kind = _baseline(model, ids, x, baseline, site)  # [1, pos, d_model]
    auto_keep = keep is None
    if keep is None:
        keep = (0,) if n_pos > 1 and base_kind != "tensor" else ()
    base = _kept(moved, x, keep)
    if warp is None:
        warp = 3 if base_kind == "zero" else 1
    base_logits = logits_of(model.run(ids, interventions={site: Set(base)}), "integrated_gradients")
    if auto_keep and keep and _predicts(base_logits, position, target_id):
        # The kept first token alone makes the model answer the target: such a baseline is not neutral
        # (docs/bench-trojan.md). Move every position instead, if that baseline is neutral.
        again = logits_of(model.run(ids, interventions={site: Set(moved)}), "integrated_gradients")
        if not _predicts(again, position, target_id):
            keep, base, base_logits = (), moved, again
    f_baseline = float(_values(f, base_logits, 1)[0])
    if target_id is not None and _predicts(base_logits, position, target_id):
        _warn_baseline(base_logits[0, position], target_id, base_kind, f_input - f_baseline, bool(keep))
    diff = (x - base).float()  # [1, pos, d_model]
    delta = f_input - f_baseline
    grads_at: dict[float, torch.Tensor] = {}  # alpha -> df/dx there, [pos, d_model] float64
    while True:
        alphas, weights = quadrature(steps, method, warp)
        if method != "trapezoid":
            grads_at = {}  # other rules do not nest: nothing to reuse
        _gradients(
            model,
            ids,
            site,
            f,
            base,
            diff,
            [a for a in alphas.tolist() if a not in grads_at],
            batch_size,
            grads_at,
        )
        total = sum(float(w) * grads_at[float(a)] for a, w in zip(alphas.tolist(), weights, strict=True))
        err = abs(float((diff[0].double().cpu() * total).sum()) - delta)
        if tol is None or err <= tol * max(abs(delta), 1e-12) or steps * 2 > max_steps:
            break
        steps *= 2
    if tol is not None and err > tol * max(abs(delta), 1e-12):
        warnings.warn(
            f"integrated gradients: the completeness error is {err / max(abs(delta), 1e-12):.1%} of "
            f"f(input) - f(baseline) = {delta:+.4f} after {steps} {method} steps (tol {tol:.2%}); the "
            "attributions are not trustworthy. Raise max_steps= (and steps=)"
            + ("" if 0 in [p % n_pos for p in keep] else ", keep the attention-sink token fixed (keep=[0])")
            + ", or use another baseline (baseline='pad' or a tensor).",
            CompletenessWarning,
            stacklevel=2,
        )
    per_dim = (diff[0].double().cpu() * total).float()  # [pos, d_model]
    tokens = model.str_tokens(ids[0].cpu())
    return IGResult(
        attributions=per_dim.sum(-1),
        per_dim=per_dim,
        f_input=f_input,
        f_baseline=f_baseline,
        str_tokens=tokens,
        target=target_id,
        target_str=None if target_id is None else model.str_tokens([target_id])[0],
        position=position % n_pos,
        steps=steps,
        method=method,
        baseline=base_kind,
        warp=warp,
        kept=sorted(p % n_pos for p in keep),
    )


def _kept(moved: torch.Tensor, x: torch.Tensor, keep: Sequence[int]) -> torch.Tensor:
    """The baseline ``moved`` with the ``keep`` positions set back to the input ``x``."""
    if not keep:
        return moved
    base, n_pos = moved.clone(), x.shape[1]
    for p in keep:
        if not -n_pos <= p < n_pos:
            raise InputError(f"keep position {p} is outside the prompt of {n_pos} tokens")
        base[:, p] = x[:, p]
    return base


def _predicts(logits: torch.Tensor, position: int, target: int | None) -> bool:
    """True when ``target`` is the top token at ``position`` (a baseline that is not neutral)."""
    return target is not None and int(logits[0, position].argmax()) == target


def _warn_baseline(logits: torch.Tensor, target: int, kind: str, delta: float, kept: bool) -> None:
    p = float(logits.float().softmax(-1)[target])
    warnings.warn(
        f"integrated gradients: the {kind} baseline already predicts the target (top token, p = {p:.2f}), so "
        f"the attributions share out only f(input) - f(baseline) = {delta:+.4f} and do not show what makes the "
        "input predict it. Pass a baseline the model answers differently: a tensor [pos, d_model] such as the "
        "embeddings of a counterfactual input (the same prompt without the feature in question) or the mean "
        "token embedding at every position"
        + (", or move the kept positions too (keep=[])." if kept else "."),
        BaselineWarning,
        stacklevel=3,
    )


def _gradients(model, ids, site, f, base, diff, alphas, batch_size, out: dict[float, torch.Tensor]) -> None:
    """df/dx at ``base + alpha * diff`` for each alpha (``batch_size`` per forward pass), into ``out``."""
    for start in range(0, len(alphas), batch_size):
        a = alphas[start : start + batch_size]
        k = len(a)
        a_t = torch.tensor(a, dtype=torch.float32, device=diff.device).view(k, 1, 1)
        points = (base.float() + a_t * diff).to(base.dtype)  # [k, pos, d_model]
        run = model.run(
            ids.expand(k, -1),
            cache=site,
            interventions={site: Set(points)},
            grad=lambda r, k=k: _values(f, r.logits, k).sum(),
        )
        grads = run.grads[site].double().cpu()  # rows are independent, so d(sum)/d(row) = df/d(row)
        for i, alpha in enumerate(a):
            out[alpha] = grads[i]


def _token_ids(model: Model, prompt: Any) -> torch.Tensor:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InputError("the prompt is empty; give some text, e.g. 'The Eiffel Tower is in the city of'")
        return model.to_tokens(prompt)
    if torch.is_tensor(prompt):
        ids = prompt.unsqueeze(0) if prompt.ndim == 1 else prompt
        if ids.ndim != 2 or ids.shape[0] != 1 or ids.dtype not in (torch.long, torch.int, torch.int32):
            raise InputError(
                f"integrated_gradients takes one prompt: text or token ids [1, pos], not {tuple(ids.shape)}"
            )
        return ids.long()
    raise InputError(f"integrated_gradients takes text or token ids, not {type(prompt).__name__}")


def _scalar_fn(
    metric: Callable | None, target: int | None, position: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    if metric is not None:
        return metric
    return lambda logits: logits[:, position, target]


def _values(f: Callable, logits: torch.Tensor, k: int) -> torch.Tensor:
    out = f(logits)
    if not torch.is_tensor(out) or out.shape != (k,):
        shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise InputError(f"metric(logits) must return one value per batch row, shape ({k},), not {shape}")
    return out.float()


def _baseline(
    model: Model, ids: torch.Tensor, x: torch.Tensor, baseline: Any, site: str
) -> tuple[torch.Tensor, str]:
    if baseline is None or (isinstance(baseline, str) and baseline == "zero"):
        return torch.zeros_like(x), "zero"
    if isinstance(baseline, str):
        if baseline != "pad":
            raise InputError(f"unknown baseline {baseline!r}; use 'zero', 'pad' or a tensor [pos, d_model]")
        tok = model.tokenizer
        pad = getattr(tok, "pad_token_id", None) if tok is not None else None
        if pad is None:
            raise InputError("baseline='pad' needs a tokenizer with a pad token; use 'zero' or a tensor")
        return model.run(torch.full_like(ids, pad), cache=site).cache[site], "pad"
    if torch.is_tensor(baseline):
        b = baseline.unsqueeze(0) if baseline.ndim == x.ndim - 1 else baseline
        if b.shape != x.shape:
            raise InputError(
                f"the baseline has shape {tuple(baseline.shape)} but the {site} site has {tuple(x.shape[1:])}"
            )
        return b.to(x.device, x.dtype), "tensor"
    raise InputError(f"baseline must be None, 'zero', 'pad' or a tensor, not {type(baseline).__name__}")
