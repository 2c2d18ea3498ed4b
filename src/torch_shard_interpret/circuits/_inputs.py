"""Prompt pairs for circuit techniques: clean and corrupt inputs grouped by length, and the metric contract."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ._graph import CircuitError

if TYPE_CHECKING:
    from ..core._model import Model

Metric = Callable[[torch.Tensor], torch.Tensor]
HINT = "one value per prompt, e.g. lambda logits: logits[:, -1, mary] - logits[:, -1, john]"


def _ids(model: Model, x: Any, what: str) -> list[torch.Tensor]:
    if isinstance(x, str):
        x = [x]
    if torch.is_tensor(x):
        rows = x if x.ndim == 2 else x[None]
        return [r[None] for r in rows]
    if isinstance(x, Sequence) and x and all(isinstance(t, str) for t in x):
        return [model.to_tokens(t) for t in x]
    raise CircuitError(
        f"the {what} inputs must be a prompt, a list of prompts or token ids [n, pos], not {type(x).__name__}"
    )


def pairs(model: Model, clean: Any, corrupt: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[(clean [n, p], corrupt [n, p])]``, one entry per prompt length, in the order given."""
    c, k = _ids(model, clean, "clean"), _ids(model, corrupt, "corrupt")
    if len(c) != len(k):
        raise CircuitError(
            f"got {len(c)} clean and {len(k)} corrupt prompts; give one corrupt prompt per clean prompt"
        )
    groups: dict[int, list[int]] = {}
    for i, (a, b) in enumerate(zip(c, k, strict=True)):
        if a.shape != b.shape:
            raise CircuitError(
                f"clean prompt {i} is {a.shape[1]} tokens but its corrupt prompt is {b.shape[1]}; edges are patched "
                "position by position, so each pair needs the same length (swap names for names of equal token count)"
            )
        groups.setdefault(a.shape[1], []).append(i)
    return [(torch.cat([c[i] for i in idx]), torch.cat([k[i] for i in idx])) for idx in groups.values()]


def metric_rows(metric: Metric, logits: torch.Tensor, n: int) -> torch.Tensor:
    """``metric(logits)`` for ``K`` blocks of ``n`` rows: ``[K, n]`` floats (the metric sees ``n`` rows at a time)."""
    if not callable(metric):
        raise CircuitError(f"metric must be a function logits -> tensor of {HINT}")
    out = []
    for k in range(logits.shape[0] // n):
        v = metric(logits[k * n : (k + 1) * n])
        if not torch.is_tensor(v) or tuple(v.shape) != (n,):
            shape = list(v.shape) if torch.is_tensor(v) else type(v).__name__
            raise CircuitError(
                f"the metric returned {shape} for {n} prompts; it must return shape [{n}], {HINT}"
            )
        out.append(v.detach().float().cpu())
    return torch.stack(out)


def scalar(metric: Metric) -> Callable:
    """The ``grad=`` function of a run: the metric summed over prompts."""

    def fn(run: Any) -> torch.Tensor:
        v = metric(run.logits)
        if not torch.is_tensor(v) or v.ndim != 1:
            raise CircuitError(f"the metric must return a 1-d tensor of {HINT}")
        return v.sum()

    return fn


def rows_per_forward(lay: Any, n: int, p: int, budget: int = 1 << 30) -> int:
    """How many patched circuits fit one forward of ``n`` prompts of ``p`` tokens in ``budget`` bytes."""
    g = lay.graph
    d = g.d_model or 1024
    per_circuit = 4 * n * p * d * (len(g.sources) + 3 * (g.n_heads + 2 * g.n_kv_heads + 4))
    return max(1, min(64, budget // max(per_circuit, 1)))
