"""What every patching technique shares: input checks, the metric contract, batch sizing and progress."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from .._progress import track
from ..core._errors import InputError, TsiError
from ..core._site import Site

if TYPE_CHECKING:
    from ..core._model import Model

Metric = Callable[[torch.Tensor], torch.Tensor]

DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes of activations one batched forward may use (1 GiB)
MAX_BATCH = 512  # rows per forward on an accelerator
MAX_BATCH_CPU = 64  # on a CPU larger batches stop paying: the matmuls are already large enough

METRIC_HINT = "one value per batch row, e.g. lambda logits: logits[:, -1, mary] - logits[:, -1, john]"


class PatchingError(TsiError, ValueError):
    """A patching technique cannot run with these inputs (lengths differ, bad metric, bad selectors)."""


def as_tokens(model: Model, inputs: Any, what: str) -> torch.Tensor:
    """``[1, pos]`` token ids (or a batch-1 input tensor) for one prompt."""
    if isinstance(inputs, str):
        if not inputs:
            raise InputError(f"the {what} prompt is empty; give the text to patch")
        ids = model.to_tokens(inputs)
    elif torch.is_tensor(inputs):
        ids = inputs.unsqueeze(0) if inputs.ndim == 1 else inputs
    elif isinstance(inputs, Sequence) and inputs and all(isinstance(t, int) for t in inputs):
        ids = torch.tensor([list(inputs)])
    else:
        raise InputError(
            f"the {what} input must be one prompt (a string) or token ids ([pos] or [1, pos]), "
            f"not {type(inputs).__name__}"
        )
    if ids.ndim < 2 or ids.shape[0] != 1:
        raise InputError(
            f"the {what} input has batch size {ids.shape[0] if ids.ndim else 0}; patching compares one clean and "
            "one corrupt prompt (loop over pairs, or average the results)"
        )
    if ids.shape[1] == 0:
        raise InputError(f"the {what} input has no tokens")
    return ids


def check_pair(model: Model, clean: Any, corrupt: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Both prompts as ``[1, pos]`` ids, checked to have the same length."""
    c, k = as_tokens(model, clean, "clean"), as_tokens(model, corrupt, "corrupt")
    if c.shape != k.shape:
        raise PatchingError(
            f"the clean prompt is {c.shape[1]} tokens but the corrupt prompt is {k.shape[1]}; patching needs "
            "prompts of the same length, position by position (change words for words of the same token count, "
            "e.g. swap names)"
        )
    return c, k


def position_labels(model: Model, ids: torch.Tensor) -> list[str]:
    """The tokens of a ``[1, pos]`` input as text (``Model.str_tokens``); position numbers when the input
    is not token ids (embeddings) or the model has no tokenizer."""
    if model.tokenizer is None or ids.dtype not in (torch.int64, torch.int32):
        return [str(i) for i in range(ids.shape[1])]
    return model.str_tokens(ids[0])


def call_metric(metric: Metric, logits: torch.Tensor, rows: int) -> torch.Tensor:
    """``metric(logits)`` checked to be ``[rows]`` floats; returned as float32 on the CPU, detached."""
    if not callable(metric):
        raise PatchingError(
            f"metric must be a function logits -> tensor of {METRIC_HINT}, not {type(metric).__name__}"
        )
    value = metric(logits)
    if not torch.is_tensor(value):
        raise PatchingError(
            f"the metric returned a {type(value).__name__}, not a tensor; it must return a tensor of {METRIC_HINT}"
        )
    if tuple(value.shape) != (rows,):
        raise PatchingError(
            f"the metric returned shape {list(value.shape)} for logits of shape {list(logits.shape)}; it must return "
            f"shape [{rows}], {METRIC_HINT} (not logits[0, ...], which keeps one row only)"
        )
    return value.detach().float().cpu()


def call_metric_grad(metric: Metric, logits: torch.Tensor) -> torch.Tensor:
    """The metric of a batch-1 run as a scalar that keeps its graph (for attribution patching)."""
    value = metric(logits)
    if not torch.is_tensor(value) or tuple(value.shape) != (logits.shape[0],):
        call_metric(metric, logits.detach(), logits.shape[0])  # raises the clear error
    return value.sum()


def parse_bytes(budget: int | float | str | None) -> int:
    """``1 << 30``, ``"2GiB"``, ``"512MB"`` -> bytes."""
    if budget is None:
        return DEFAULT_MEMORY_BUDGET
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
        if budget <= 0:
            raise PatchingError(f"memory_budget must be positive, not {budget}")
        return int(budget)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?i?b?)\s*", str(budget).lower())
    if match is None:
        raise PatchingError(
            f"memory_budget {budget!r} is not a size; give bytes (an int) or e.g. '2GiB', '512MB'"
        )
    unit = match[2].rstrip("b").rstrip("i")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit]
    return max(int(float(match[1]) * scale), 1)


def rows_per_batch(
    model: Model, ids: torch.Tensor, logits: torch.Tensor, batch_size: int | None, budget: Any
) -> int:
    """How many patched rows one forward holds: ``batch_size``, else an estimate of the bytes one row needs
    (logits twice, the widest activations of one block, the attention scores, the patched copies) against
    ``memory_budget``."""
    if batch_size is not None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise PatchingError(f"batch_size must be a positive int, not {batch_size!r}")
        return batch_size
    cfg = model.cfg
    pos = ids.shape[1] if ids.ndim >= 2 else 1
    elsize = logits.element_size()
    d_model = cfg.d_model or 1024
    d_mlp = cfg.d_mlp or 4 * d_model
    n_heads = cfg.n_heads or 16
    n_layers = cfg.n_layers or 1
    per_row = elsize * (
        2 * logits[0].numel()
        + pos * (12 * d_model + 3 * d_mlp + 3 * n_heads * pos)
        + pos * d_model * n_layers
    )
    cap = MAX_BATCH_CPU if logits.device.type == "cpu" else MAX_BATCH
    return max(1, min(cap, parse_bytes(budget) // per_row))


def chunks(n: int, size: int) -> list[range]:
    """``range(n)`` in ``ceil(n / size)`` chunks of nearly equal size (at most ``size``)."""
    if n == 0:
        return []
    count = -(-n // size)
    step = -(-n // count)
    return [range(i, min(i + step, n)) for i in range(0, n, step)]


def progress_chunks(items: Iterable[Any], total: int, desc: str, show: bool) -> Iterator[Any]:
    """A bar over chunks (``_progress``: tqdm on a terminal, a line now and then elsewhere); none for one chunk."""
    return track(items, total=total, desc=desc, unit="batch", enabled=show and total > 1)


def head_dim(site: Site, ndim: int = 4) -> int | None:
    return site.dim("n_heads", ndim)


def check_head_sites(sites: list[Site], what: str) -> None:
    for site in sites:
        if site.layout is None or "n_heads" not in site.layout:
            raise PatchingError(
                f"heads=True needs sites with a head dimension (blocks.N.attn.z), but {what} includes {site.name!r}; "
                "use sites='blocks.*.attn.z' or heads=False"
            )


def last_logits_kwargs(model: Model, metric: Metric, logits: torch.Tensor | None) -> dict[str, Any]:
    """``{"logits_to_keep": 1}`` when the model computes logits for the last position only on request and
    ``metric`` reads only that position, else ``{}``; ``logits``: one full run's logits ``[1, pos, vocab]``.

    The metric reads only the last position when it gives the same value on that position alone and stays
    finite when every earlier position is NaN. Skipping the other positions' unembedding saves its forward
    (and, for attribution patching, its backward)."""
    import inspect

    forward = getattr(model.module, "forward", None)
    try:
        if logits is None or logits.ndim != 3 or logits.shape[1] < 2 or forward is None:
            return {}
        if "logits_to_keep" not in inspect.signature(forward).parameters:
            return {}
        probe = logits.detach().clone()
        probe[:, :-1] = float("nan")
        with torch.no_grad():
            want, alone, masked = metric(logits), metric(logits[:, -1:]), metric(probe)
        ok = all(torch.is_tensor(v) and v.shape == want.shape for v in (alone, masked)) and bool(
            torch.isfinite(masked).all() and torch.equal(alone, want) and torch.equal(masked, want)
        )
    except Exception:  # noqa: BLE001 - a metric that needs the other positions (or indexes them)
        return {}
    return {"logits_to_keep": 1} if ok else {}
