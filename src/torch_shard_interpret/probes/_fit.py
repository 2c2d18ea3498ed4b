"""probes.fit: harvest many sites in one run per batch, then fit a linear probe per site."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..steering._acts import Position, as_texts, check_position, collect
from ._linear import ProbeResults, _as_labels, _fit_split, resolve_task, split_plan

if TYPE_CHECKING:
    from ..core._model import Model


def fit(
    model: Model,
    texts: Sequence[str],
    labels: Any,
    sites: str | Sequence[str] = "blocks.*.resid_post",
    position: Position = -1,
    task: str = "auto",
    val_fraction: float = 0.25,
    seed: int = 0,
    *,
    l2: float = 1e-2,
    alpha: float = 1.0,
    batch_size: int = 16,
    progress: bool = False,
) -> ProbeResults:
    """Fit a linear probe from the activations of ``texts`` at every site in ``sites`` to ``labels``.

    ``position``: the token read in each text (``-1``: the last real token) or ``"mean"``. ``task="auto"``:
    regression when every label is a number and at least one is a float, else classification.
    Classification: multinomial logistic regression (full-batch L-BFGS, L2 penalty ``l2`` on standardised
    features); regression: ridge (closed form, penalty ``alpha``). The split is stratified for classes and
    the same for every site; the control task shuffles the labels (train and validation) with ``seed``.
    Returns ``{site: ProbeResult}`` (a dict with ``.to_html()``).
    """
    texts = as_texts(texts, "texts")
    position = check_position(position)
    labels = _as_labels(labels, len(texts))
    task = resolve_task(task, labels)
    plan = split_plan(labels, task, val_fraction, seed)  # check the labels before the slow harvest
    acts = collect(model, texts, sites, position, batch_size, progress)
    out = ProbeResults()
    for site, x in acts.items():
        x = x.reshape(x.shape[0], -1).to(torch.float64)  # [n_texts, d] (head sites are flattened)
        out[site] = _fit_split(
            x, labels, task, plan, l2=l2, alpha=alpha, site=site, position=position, seed=seed
        )
    return out
