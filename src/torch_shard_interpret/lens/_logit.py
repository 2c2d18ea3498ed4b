"""The logit lens: the model's own final norm and unembedding applied to the residual stream after each block.

One run records ``blocks.*.resid_post`` (and ``blocks.0.resid_pre``, the embeddings, with
``include_embed=True``); the final-norm module and the unembedding module of the user's model are then
called on those activations, a few layers at a time. Probabilities are always kept; the raw logits, as
large again (``[rows, pos, d_vocab]`` float32), only with ``return_logits=True``. The last layer's lens equals the
model's real output (up to an output transform applied after the unembedding, such as Gemma 2's logit
soft-capping, which the lens does not apply).
"""

from __future__ import annotations

from typing import Any, overload

import torch
from torch import nn

from ..core._errors import InputError, TsiError
from ..core._model import Model, RunResult
from ..core._site import natural_key
from ..core._tokens import token_id
from ._result import LensResult


def readout_modules(model: Model) -> tuple[nn.Module, nn.Module]:
    """``(final_norm, unembed)``: the modules behind the ``final_norm`` and ``logits`` sites."""
    names = set(model.sites())
    missing = [n for n in ("final_norm", "logits") if n not in names]
    if missing:
        raise TsiError(
            f"the logit lens needs the sites {', '.join(missing)}, which this model's adapter does not name; "
            "wrap a model with a known architecture (model.cfg.architecture is None here)"
        )
    return model.site("final_norm").module, model.site("logits").module


def module_device(module: nn.Module, default: torch.device | None = None) -> torch.device:
    for p in module.parameters():
        if p.device.type != "meta":
            return p.device
    return default or torch.device("cpu")


def module_dtype(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        return p.dtype
    return torch.float32


@torch.no_grad()
def unembed(model: Model, resid: torch.Tensor) -> torch.Tensor:
    """Logits ``[..., d_vocab]`` (float32) of residual vectors ``[..., d_model]``: final norm, then unembedding."""
    norm, head = readout_modules(model)
    x = resid.to(module_device(norm, resid.device), module_dtype(norm))
    x = norm(x)
    x = x.to(module_device(head, x.device), module_dtype(head))
    return head(x).float()


@overload
def as_token_id(model: Model, token: int | str, what: str = ...) -> int: ...
@overload
def as_token_id(model: Model, token: int | str | None, what: str = ...) -> int | None: ...
def as_token_id(model: Model, token: int | str | None, what: str = "target") -> int | None:
    """A token id from an id or a one-token string (``InputError`` otherwise); ``None`` stays ``None``."""
    if token is None:
        return None
    if isinstance(token, bool) or not isinstance(token, (int, str)) and not torch.is_tensor(token):
        raise InputError(
            f"{what} must be a token string such as ' Paris' or a token id, not {type(token).__name__}"
        )
    if isinstance(token, str):
        return token_id(model.tokenizer, token, what)
    tid = int(token)
    n_vocab = model.cfg.d_vocab
    if tid < 0 or (n_vocab is not None and tid >= n_vocab):
        raise InputError(f"{what} id {tid} is outside the vocabulary (0 .. {(n_vocab or 1) - 1})")
    return tid


EMBED_SITE = "blocks.0.resid_pre"
"""The residual before block 0 (TransformerLens ``blocks.0.hook_resid_pre``): the token embedding, plus the
position embedding and any embedding scaling the model applies, i.e. what block 0 reads."""


def logit_lens(
    model: Model,
    prompt: Any,
    *,
    target: int | str | None = None,
    positions: Any = None,
    batch_size: int = 4,
    include_embed: bool = False,
    return_logits: bool = False,
) -> LensResult:
    """Apply the final norm and the unembedding to ``blocks.{i}.resid_post`` of every block.

    Args:
        model: a ``tsi.Model`` with an adapter that names ``final_norm`` and ``logits``.
        prompt: one prompt (text or ``[1, pos]`` token ids).
        target: a token (``" Paris"`` or an id) that ``result.prob()`` / ``result.rank()`` use by default.
        positions: restrict the lens to these positions (ints, negative allowed); default all.
        batch_size: layers unembedded at a time (bounds the memory of the ``[layers, pos, d_vocab]`` logits).
        include_embed: also read the embeddings (``blocks.0.resid_pre``) as a first row, so the result has
            ``n_layers + 1`` rows; off by default, which keeps one row per block.
        return_logits: keep the raw logits in ``result.logits`` (another ``[rows, pos, d_vocab]`` float32
            tensor); off by default, when ``result.logits`` is ``None``.

    Returns:
        ``LensResult`` with ``probs`` ``[n_layers, pos, d_vocab]`` (``n_layers + 1`` rows with
        ``include_embed``), ``log_probs`` and, when asked, ``logits`` of the same shape.
    """
    target_id = as_token_id(model, target)
    readout_modules(model)  # fail before running when the model cannot be read out
    cache = [EMBED_SITE, "blocks.*.resid_post"] if include_embed else "blocks.*.resid_post"
    run = model.run(prompt, cache=cache)
    return lens_from_run(
        model,
        run,
        target=target_id,
        positions=positions,
        batch_size=batch_size,
        include_embed=include_embed,
        return_logits=return_logits,
    )


def lens_from_run(
    model: Model,
    run: RunResult,
    *,
    target: int | None = None,
    positions: Any = None,
    batch_size: int = 4,
    include_embed: bool = False,
    return_logits: bool = False,
) -> LensResult:
    """The logit lens of a run that cached ``blocks.*.resid_post`` (used by the report to share one run);
    ``include_embed`` also needs ``blocks.0.resid_pre`` in the cache."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, not {batch_size!r}")
    names = sorted(run.cache.names("blocks.*.resid_post"), key=natural_key)
    if not names:
        raise TsiError("the run did not cache blocks.*.resid_post; pass cache='blocks.*.resid_post'")
    if include_embed:
        if EMBED_SITE not in run.cache.names():
            raise TsiError(f"include_embed needs a run that cached {EMBED_SITE}")
        names = [EMBED_SITE, *names]
    first = run.cache[names[0]]
    if first.shape[0] != 1:
        raise InputError(f"the logit lens takes one prompt, not a batch of {first.shape[0]}")
    cols = position_columns(positions, first.shape[1])
    prob_chunks, logit_chunks = [], []
    for start in range(0, len(names), batch_size):
        resid = torch.stack(
            [run.cache[n][0, cols] for n in names[start : start + batch_size]]
        )  # [b, pos, d_model]
        logits = unembed(model, resid)  # [b, pos, d_vocab]
        prob_chunks.append(logits.softmax(-1).cpu())
        if return_logits:
            logit_chunks.append(logits.cpu())
    tokens = run.tokens[0, cols].cpu() if run.tokens is not None else torch.tensor(cols)
    return LensResult(
        probs=torch.cat(prob_chunks),
        tokens=tokens,
        str_tokens=model.str_tokens(tokens) if run.tokens is not None else [str(c) for c in cols],
        positions=cols,
        target=target,
        layer_names=names,
        tokenizer=model.tokenizer,
        logits=torch.cat(logit_chunks) if return_logits else None,
    )


def position_columns(positions: Any, n_pos: int) -> list[int]:
    """The prompt positions a lens reads (``None``: all of them), as indices in ``0..n_pos-1``."""
    if positions is None:
        return list(range(n_pos))
    raw = [positions] if isinstance(positions, int) else list(positions)
    cols = []
    for p in raw:
        if not -n_pos <= p < n_pos:
            raise InputError(f"position {p} is outside the prompt of {n_pos} tokens")
        cols.append(p % n_pos)
    return cols
