"""Direct logit attribution down to MLP neurons: one block's MLP split over its hidden units.

The MLP writes ``W_down @ post + b_down`` into the residual (``post`` is ``blocks.{i}.mlp.post``), so with the
final norm's scale frozen as in ``direct_logit_attribution`` neuron ``n`` contributes
``post[n] * (centre(W_down[:, n]) @ readout)``. The neurons plus the bias's share add up to that block's
``blocks.{i}.mlp`` component whenever the MLP's output is the down projection's (not after a post-norm).
"""

from __future__ import annotations

from typing import Any

import torch

from ..core._errors import InputError, TsiError
from ..core._model import Model
from ..lens._logit import as_token_id, readout_modules
from ._dla import DLA_SITES, _frozen_norm, _unembed_columns, dla_from_run, read_layer
from ._weights import linear_weight_in_out


@torch.no_grad()
def neuron_attribution(
    model: Model,
    prompt: Any,
    target: int | str | None = None,
    baseline: int | str | None = None,
    *,
    block: int,
    position: int = -1,
    layer: int | None = None,
) -> tuple[torch.Tensor, float]:
    """``(per_neuron [d_mlp], bias)``: the direct contribution of each hidden unit of block ``block``'s MLP
    (and of its down-projection bias, 0.0 when there is none) to ``logit(target) - logit(baseline)``.

    ``target``, ``baseline``, ``position`` and ``layer`` are those of ``direct_logit_attribution``;
    ``block`` must be at most the layer read. ``per_neuron.sum() + bias`` equals that call's
    ``components[f"blocks.{block}.mlp"]`` up to rounding (for MLPs without an output norm).
    """
    n_layers = model.cfg.n_layers or 0
    last = read_layer(layer, n_layers)
    b = read_layer(block, n_layers)
    if b > last:
        raise InputError(f"block {block} comes after the layer read ({last}); it writes nothing into it")
    site = f"blocks.{b}.mlp.post"
    if site not in model.sites():
        raise TsiError(
            f"this model's adapter names no {site} (no down projection), so neurons cannot be read"
        )
    norm, head = readout_modules(model)
    run = model.run(prompt, cache=[*DLA_SITES, site])
    dla = dla_from_run(
        model,
        run,
        target=as_token_id(model, target),
        baseline=as_token_id(model, baseline, "baseline"),
        position=position,
        layer=layer,
    )
    post = run.cache[site]
    if post.dim() != 3:
        raise TsiError(f"{site} is not laid out [batch, pos, d_mlp] for this model; neurons cannot be read")
    ids = [dla.target] if dla.baseline is None else [dla.target, dla.baseline]
    w_u = _unembed_columns(head, ids)
    direction = w_u[:, 0] if dla.baseline is None else w_u[:, 0] - w_u[:, 1]
    final = run.cache[f"blocks.{last}.resid_post"][0, dla.position].float().cpu()
    centre, weight, scale = _frozen_norm(norm, final)
    readout = weight * direction / scale  # [d_model]
    down = model.site(site).module
    w_down = linear_weight_in_out(down).detach().float().cpu()  # [d_mlp, d_model]
    if centre:
        w_down = w_down - w_down.mean(-1, keepdim=True)
    per_neuron = post[0, dla.position].float().cpu() * (w_down @ readout)  # [d_mlp]
    bias = getattr(down, "bias", None)
    bias_part = 0.0
    if isinstance(bias, torch.Tensor):
        vec = bias.detach().float().cpu()
        bias_part = float((vec - vec.mean() if centre else vec) @ readout)
    return per_neuron, bias_part
