"""Direct logit attribution: how much each component writes, directly, towards one logit.

The residual stream at the last block is a sum of what each component wrote into it,
``resid_final = embed + sum_i (attn_i + mlp_i)``. The final norm is not linear, so DLA freezes its
scale at its value on the full residual: the final norm then acts on each component separately as
``norm(c) = (c - mean(c)) / s * w`` (no mean for RMSNorm; ``s`` the norm's scale on ``resid_final``,
``w`` its weight), and a component's direct contribution to the logit of token ``t`` is
``norm(c) @ W_U[:, t]`` (minus the same for the baseline token when there is one).

With that frozen scale the decomposition is exact except for terms no component owns: the final norm's
bias, the unembedding's bias, output transforms after the unembedding (soft-capping) and anything the
adapter's components do not cover. These land in ``DLAResult.remainder``, so that
``sum(components.values()) + remainder == total`` always. For LLaMA-style models (RMSNorm, no biases)
the remainder is float rounding only.

``layer=L`` explains the logit the logit lens reads at ``blocks.{L}.resid_post`` instead,
``unembed(final_norm(resid_post_L))``, by the components that wrote into that residual (the embedding and
blocks ``0..L``), with the final norm's scale frozen on that residual; the same identity holds.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._render import standalone
from ..core._errors import InputError, TsiError
from ..core._model import Model, RunResult
from ..core._result import jsonable
from ..lens._logit import as_token_id, module_device, module_dtype, readout_modules, unembed
from ._dla_html import dla_section_html

DLA_SITES = ("embed", "blocks.*.attn.out", "blocks.*.mlp.out", "blocks.*.attn.z", "blocks.*.resid_post")


@dataclass
class DLAResult:
    """Direct logit attribution at one position. See the module docstring for the frozen-scale definition."""

    total: float
    """The model's logit of ``target`` at ``position`` (minus the baseline's logit when there is a baseline)."""
    components: dict[str, float]
    """``embed``, ``blocks.{i}.attn``, ``blocks.{i}.mlp`` -> direct contribution (an additive decomposition)."""
    remainder: float
    """``total - sum(components)``: biases of the final norm and unembedding, soft-capping, rounding."""
    heads: torch.Tensor
    """``[n_layers, n_heads]`` contribution of each attention head (through its slice of ``W_O``)."""
    head_bias: torch.Tensor
    """``[n_layers]`` contribution of the attention output bias ``b_O`` (zeros when there is none);
    ``heads[i].sum() + head_bias[i] == components[f"blocks.{i}.attn"]`` up to rounding."""
    target: int
    baseline: int | None = None
    position: int = -1
    target_str: str = ""
    baseline_str: str | None = None
    str_tokens: list[str] = field(default_factory=list)
    scale: float = float("nan")
    """The frozen final-norm scale ``s`` on the full residual at ``position``."""
    layer: int | None = None
    """The block whose ``resid_post`` was read (``layer=`` of the call); ``None``: the model's output."""

    @property
    def n_layers(self) -> int:
        return self.heads.shape[0]

    def per_layer(self) -> dict[str, torch.Tensor]:
        """``{"attn": [n_layers], "mlp": [n_layers]}`` contributions, plus ``"embed"`` as a 1-element tensor."""
        attn = torch.tensor([self.components[f"blocks.{i}.attn"] for i in range(self.n_layers)])
        mlp = torch.tensor([self.components[f"blocks.{i}.mlp"] for i in range(self.n_layers)])
        return {"attn": attn, "mlp": mlp, "embed": torch.tensor([self.components.get("embed", 0.0)])}

    def top_heads(self, k: int = 5) -> list[tuple[int, int, float]]:
        """The ``k`` heads with the largest ``|contribution|``: ``(layer, head, contribution)``."""
        flat = self.heads.flatten()
        order = flat.abs().argsort(descending=True)[:k].tolist()
        n_heads = self.heads.shape[1]
        return [(i // n_heads, i % n_heads, float(flat[i])) for i in order]

    def top_components(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` components with the largest ``|contribution|``."""
        return sorted(self.components.items(), key=lambda kv: -abs(kv[1]))[:k]

    @property
    def label(self) -> str:
        """``logit(' Paris')`` or ``logit(' Mary') - logit(' John')``."""
        t = f"logit({self.target_str!r})"
        t = t if self.baseline is None else f"{t} - logit({self.baseline_str!r})"
        return t if self.layer is None else f"{t} at blocks.{self.layer}.resid_post"

    def to_dict(self, top: int = 8) -> dict[str, Any]:
        """JSON-safe: every field (``target`` and ``baseline`` as ``{"token", "id"}``), the ``label``, the
        ``per_layer`` sums (``attn``, ``mlp`` lists and the ``embed`` number) and the ``top`` largest
        components as ``[name, contribution]`` pairs."""
        per = self.per_layer()
        return jsonable({
            "label": self.label,
            "target": {"token": self.target_str, "id": self.target},
            "baseline": None if self.baseline is None else {"token": self.baseline_str, "id": self.baseline},
            "position": self.position,
            "layer": self.layer,
            "tokens": self.str_tokens,
            "total": self.total,
            "remainder": self.remainder,
            "scale": self.scale,
            "components": self.components,
            "per_layer": {"attn": per["attn"], "mlp": per["mlp"], "embed": float(per["embed"][0])},
            "heads": self.heads,
            "head_bias": self.head_bias,
            "top_components": [list(kv) for kv in self.top_components(top)],
        })  # fmt: skip

    def to_html(self) -> str:
        """A self-contained HTML page: per-layer bars (attention vs MLP) and the per-head heatmap."""
        return standalone("Direct logit attribution", dla_section_html(self))

    def _repr_html_(self) -> str:
        return self.to_html()


def direct_logit_attribution(
    model: Model,
    prompt: Any,
    target: int | str | None = None,
    baseline: int | str | None = None,
    *,
    position: int = -1,
    layer: int | None = None,
) -> DLAResult:
    """Direct logit attribution of ``target`` (minus ``baseline``) at ``position`` to every component.

    Args:
        model: a ``tsi.Model`` whose adapter names ``final_norm`` and ``logits``.
        prompt: one prompt (text or ``[1, pos]`` token ids).
        target: a one-token string (``" Paris"``) or token id; ``None`` uses the model's top prediction.
        baseline: optional second token; the attribution is then of ``logit(target) - logit(baseline)``.
        position: the position whose prediction is explained (default the last).
        layer: explain the logit-lens logit read at ``blocks.{layer}.resid_post`` (negative counts from the
            end) by the embedding and blocks ``0..layer``; default ``None``, the model's own output logit.

    Returns:
        ``DLAResult``. Contributions use the final norm's scale frozen at its value on the full residual
        stream (see the module docstring), so ``sum(components) + remainder == total`` exactly and the
        remainder holds only what no component owns (norm and unembedding biases, soft-capping).
    """
    target_id = as_token_id(model, target)
    baseline_id = as_token_id(model, baseline, "baseline")
    readout_modules(model)
    run = model.run(prompt, cache=list(DLA_SITES))
    return dla_from_run(model, run, target=target_id, baseline=baseline_id, position=position, layer=layer)


def dla_from_run(
    model: Model,
    run: RunResult,
    *,
    target: int | None = None,
    baseline: int | None = None,
    position: int = -1,
    layer: int | None = None,
    row: int | None = None,
    n_tokens: int | None = None,
) -> DLAResult:
    """DLA from a run that cached ``DLA_SITES`` (the report shares one run between techniques).

    ``row``: the prompt of a batched run to explain (default: the run must hold one prompt); ``n_tokens``:
    that prompt's real (right-padded) length, which ``position`` counts within (default the full width)."""
    norm, head = readout_modules(model)
    n_layers = model.cfg.n_layers
    if run.logits is None or not n_layers:
        raise TsiError("direct logit attribution needs a run with logits and a model with named blocks")
    if row is None:
        if run.logits.shape[0] != 1:
            raise InputError(
                f"direct logit attribution takes one prompt, not a batch of {run.logits.shape[0]}; "
                "use tsi.attribution.dla_batch for several"
            )
        row = 0
    n_pos = run.logits.shape[1] if n_tokens is None else n_tokens
    if not -n_pos <= position < n_pos:
        raise InputError(f"position {position} is outside the prompt of {n_pos} tokens")
    pos = position % n_pos
    last = read_layer(layer, n_layers)
    final = run.cache[f"blocks.{last}.resid_post"][row, pos].float().cpu()  # [d_model]
    logits = run.logits[row, pos].float() if layer is None else unembed(model, final)
    if target is None:
        target = int(logits.argmax())
    total = float(logits[target] - (logits[baseline] if baseline is not None else 0.0))

    # The logit direction in the residual basis: W_U[:, t] (- W_U[:, baseline]), as float32 on CPU.
    w_u = _unembed_columns(head, [target] if baseline is None else [target, baseline])  # [d_model, 1 or 2]
    direction = w_u[:, 0] if baseline is None else w_u[:, 0] - w_u[:, 1]  # [d_model]

    centre, weight, scale = _frozen_norm(norm, final)
    readout = weight * direction / scale  # [d_model]: contribution = centre(c) @ readout

    def contrib(vec: torch.Tensor) -> torch.Tensor:  # [..., d_model] -> [...]
        vec = vec.float().cpu()
        if centre:
            vec = vec - vec.mean(-1, keepdim=True)
        return vec @ readout

    components: dict[str, float] = {"embed": float(contrib(run.cache["embed"][row, pos]))}
    heads = torch.zeros(last + 1, model.cfg.n_heads or 0)
    head_bias = torch.zeros(last + 1)
    from ._weights import head_output_weights

    for i in range(last + 1):
        components[f"blocks.{i}.attn"] = float(contrib(run.cache[f"blocks.{i}.attn.out"][row, pos]))
        components[f"blocks.{i}.mlp"] = float(contrib(run.cache[f"blocks.{i}.mlp.out"][row, pos]))
        z = run.cache[f"blocks.{i}.attn.z"][row, pos].float().cpu()  # [n_heads, d_head]
        w_o, b_o = head_output_weights(model, i)  # [n_heads, d_head, d_model], [d_model] | None
        per_head = torch.einsum("hd,hdm->hm", z, w_o.detach().float().cpu())  # [n_heads, d_model]
        heads[i, : per_head.shape[0]] = contrib(per_head)
        if b_o is not None:
            head_bias[i] = contrib(b_o.detach())
    remainder = _exact_remainder(total, components)
    tokens = run.tokens[row, :n_pos].cpu() if run.tokens is not None else None
    return DLAResult(
        total=total,
        components=components,
        remainder=remainder,
        heads=heads,
        head_bias=head_bias,
        target=target,
        baseline=baseline,
        position=pos,
        target_str=model.str_tokens(torch.tensor([target]))[0],
        baseline_str=None if baseline is None else model.str_tokens(torch.tensor([baseline]))[0],
        str_tokens=model.str_tokens(tokens) if tokens is not None else [],
        scale=float(scale),
        layer=None if layer is None else last,
    )


def read_layer(layer: Any, n_layers: int) -> int:
    """The block index ``layer=`` names (``None``: the last block); ``InputError`` when out of range."""
    if layer is None:
        return n_layers - 1
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise InputError(f"layer must be a block index (an int), not {type(layer).__name__}")
    if not -n_layers <= layer < n_layers:
        raise InputError(f"layer {layer} is outside the model's blocks 0..{n_layers - 1}")
    return layer % n_layers


def _unembed_columns(head: nn.Module, ids: list[int]) -> torch.Tensor:
    """Columns ``W_U[:, ids]`` as ``[d_model, len(ids)]`` float32 on CPU."""
    from ._weights import linear_weight_in_out

    weight = linear_weight_in_out(head)  # [d_model, d_vocab]
    return weight[:, ids].detach().float().cpu()


@torch.no_grad()
def _frozen_norm(norm: nn.Module, x: torch.Tensor) -> tuple[bool, torch.Tensor, torch.Tensor]:
    """Read the final norm as ``norm(v) = centre(v) / s * w + b`` with ``s`` frozen at its value on ``x``.

    Probes the user's own module rather than assuming a formula, so LayerNorm, RMSNorm and variants with a
    ``(1 + weight)`` parametrisation (Gemma) all work. Returns ``(centre, w, s)``: whether the norm subtracts
    the mean, the effective weight ``[d_model]`` and the scale (a 0-d tensor).
    """
    d = x.shape[-1]
    device, dtype = module_device(norm), module_dtype(norm)

    def apply(v: torch.Tensor) -> torch.Tensor:
        return norm(v.to(device, dtype).unsqueeze(0)).squeeze(0).float().cpu()

    bias = apply(torch.zeros(d))
    # A constant vector has no variance: a mean-subtracting norm maps it to its bias alone.
    const = apply(torch.full((d,), 3.0))
    centre = bool(torch.allclose(const, bias, atol=1e-4 * max(1.0, float(bias.abs().max()))))
    # An alternating +-1 probe (mean-centred) has a known scale, so the output reveals the effective weight.
    probe = torch.ones(d)
    probe[1::2] = -1.0
    if centre:
        probe = probe - probe.mean()
    probe_scale = _scale(norm, probe)
    weight = (apply(probe) - bias) * probe_scale / probe
    xc = x - x.mean() if centre else x
    y = apply(x) - bias
    basis = xc * weight
    denom = float(basis @ basis)
    scale = torch.tensor(float("inf")) if denom == 0 else torch.tensor(denom / float(basis @ y))
    if not torch.allclose(basis / scale, y, rtol=1e-3, atol=1e-3 * max(1.0, float(y.abs().max()))):
        warnings.warn(
            f"tsi: the final norm ({type(norm).__name__}) is not of the form (x - mean) / s * w + b; "
            "direct logit attributions are approximate and the remainder may be large",
            stacklevel=3,
        )
    return centre, weight, scale


def _scale(norm: nn.Module, probe: torch.Tensor) -> float:
    eps = 0.0
    for attr in ("variance_epsilon", "eps", "epsilon"):
        val = getattr(norm, attr, None)
        if isinstance(val, (int, float)):
            eps = float(val)
            break
    return math.sqrt(float((probe * probe).mean()) + eps)


def _exact_remainder(total: float, components: dict[str, float]) -> float:
    """``total - sum(components)``, nudged by ulps so that ``sum(components.values()) + r == total`` holds
    bit for bit with Python's own ``sum``."""
    s = sum(components.values())
    r = total - s
    for _ in range(8):
        diff = total - (s + r)
        if diff == 0:
            break
        r = math.nextafter(r, math.inf if diff > 0 else -math.inf)
    return r
