"""evaluate: L0, FVU, dead and dense latents, and cross-entropy loss recovered with the SAE spliced in."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from .._render import esc, fmt, key_values, standalone
from ..core._interventions import Ablate, Set
from ..core._result import jsonable, logits_of
from ._config import SAEError, SAEWarning
from ._sites import site_for

if TYPE_CHECKING:
    from ..core._model import Model


@dataclass
class EvalResult:
    """What ``tsi.sae.evaluate`` measures, over the non-padding tokens of the texts."""

    l0: float
    """Mean number of active latents per token."""
    fvu: float
    """Fraction of variance unexplained: ``sum ||x - x_hat||^2 / sum ||x - mean(x)||^2``."""
    mse: float
    """Mean squared error per token (summed over the width)."""
    dead_fraction: float
    """Fraction of latents that never fired on these tokens."""
    dense_fraction: float
    """Fraction of latents that fired on more than 10% of the tokens."""
    ce_clean: float
    """Next-token cross-entropy of the unchanged model."""
    ce_spliced: float
    """... with the reconstruction in place of the activation."""
    ce_zero: float
    """... with the activation zero-ablated."""
    ce_loss_recovered: float
    """``(ce_zero - ce_spliced) / (ce_zero - ce_clean)``: 1 is perfect, 0 is no better than ablation."""
    n_tokens: int
    site: str

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))

    def to_html(self) -> str:
        """A self-contained HTML page: the numbers of ``__str__`` as a table."""
        rows = [
            ("L0 (active latents per token)", fmt(self.l0)), ("FVU", fmt(self.fvu)), ("MSE", fmt(self.mse)),
            ("dead latents", f"{self.dead_fraction:.1%}"), ("dense latents", f"{self.dense_fraction:.1%}"),
            ("CE loss recovered", fmt(self.ce_loss_recovered)), ("CE clean", fmt(self.ce_clean)),
            ("CE spliced", fmt(self.ce_spliced)), ("CE zero-ablated", fmt(self.ce_zero)),
            ("tokens", str(self.n_tokens)),
        ]  # fmt: skip
        title = f"SAE evaluation at {self.site}"
        return standalone(title, f"<h1>{esc(title)}</h1>{key_values(rows)}")

    def __str__(self) -> str:
        return (
            f"{self.site}: L0 {self.l0:.1f}, FVU {self.fvu:.3f}, dead {self.dead_fraction:.1%}, "
            f"dense {self.dense_fraction:.1%}, CE loss recovered {self.ce_loss_recovered:.3f} "
            f"(clean {self.ce_clean:.3f}, spliced {self.ce_spliced:.3f}, zero {self.ce_zero:.3f}; "
            f"{self.n_tokens} tokens)"
        )


def _ce(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """Summed next-token cross-entropy and the number of predicted tokens (both ends unmasked)."""
    logits = logits[:, :-1]
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), tokens[:, 1:].reshape(-1), reduction="none"
    ).view(tokens.shape[0], -1)
    m = mask[:, 1:] & mask[:, :-1]
    return float(nll[m].sum()), int(m.sum())


def _rows(model: Model, texts: Any, context: int, pack: bool) -> list[torch.Tensor]:
    """The inputs as 1-d LongTensors of at most ``context`` tokens each."""
    if torch.is_tensor(texts):
        if texts.is_floating_point() or texts.ndim not in (1, 2):
            raise SAEError(
                f"token ids must be an integer tensor [n, pos], not {texts.dtype} {list(texts.shape)}"
            )
        texts = list(texts.reshape(-1, texts.shape[-1]).to(torch.int64))
    elif isinstance(texts, str):
        texts = [texts]
    else:
        texts = list(texts)
    if not texts:
        raise SAEError("evaluate needs at least one text")
    if all(torch.is_tensor(t) for t in texts):
        ids = [t.reshape(-1).to("cpu", torch.int64).tolist() for t in texts]
    elif all(isinstance(t, str) for t in texts):
        tok = model.tokenizer
        if tok is None:
            raise SAEError("evaluate needs a model with a tokenizer for text inputs (or give token ids)")
        if pack:
            eos = getattr(tok, "eos_token_id", None)
            if eos is None:
                raise SAEError("pack=True needs a tokenizer with an EOS token to separate the texts")
            stream: list[int] = []
            for ids_ in tok(texts, add_special_tokens=False)["input_ids"]:
                stream += [*ids_, eos]
            ids = [stream]
        else:  # as run() would tokenize each text (special tokens included)
            ids = [list(t) for t in tok(texts)["input_ids"]]
    else:
        raise SAEError("evaluate takes texts (str), or token ids (a LongTensor [n, pos] or a list of them)")
    rows = [
        torch.tensor(t[i : i + context], dtype=torch.int64) for t in ids for i in range(0, len(t), context)
    ]
    rows = [r for r in rows if r.numel()]
    if not rows:
        raise SAEError("evaluate got no tokens: the texts are empty")
    return rows


def _batches(rows: list[torch.Tensor], batch_size: int, pad: int):
    """Right-padded ``(input_ids, attention_mask)`` batches of rows of similar length."""
    order = sorted(range(len(rows)), key=lambda i: -rows[i].numel())
    for start in range(0, len(order), batch_size):
        chunk = [rows[i] for i in order[start : start + batch_size]]
        width = chunk[0].numel()
        ids = torch.full((len(chunk), width), pad, dtype=torch.int64)
        mask = torch.zeros((len(chunk), width), dtype=torch.int64)
        for j, r in enumerate(chunk):
            ids[j, : r.numel()] = r
            mask[j, : r.numel()] = 1
        yield ids, mask


@torch.no_grad()
def evaluate(
    model: Model,
    sae: Any,
    texts: Any,
    site: str | None = None,
    batch_size: int = 8,
    context: int = 128,
    pack: bool = False,
    max_tokens: int | None = None,
) -> EvalResult:
    """Measure ``sae`` on ``model`` over ``texts``. ``site`` defaults to ``sae.cfg.hook_name`` (for a
    transcoder: it reads ``hook_name`` and its prediction replaces ``hook_name_out``); TransformerLens hook
    names as SAELens writes them (``blocks.3.hook_resid_post``) map to our sites.

    ``texts``: a string, a list of strings, or token ids (a LongTensor ``[n, pos]`` or a list of 1-d ones).
    Every text is tokenized as ``model.run`` would and cut into rows of at most ``context`` tokens (a long
    text becomes several rows, none is dropped); ``pack=True`` instead packs the texts as
    ``tsi.store.harvest`` does (no special tokens, EOS after each text, rows of ``context`` tokens; the last
    row may be shorter). Rows of similar length are run ``batch_size`` at a time, right-padded.
    ``max_tokens`` stops after the batch that reaches that many tokens.
    """
    if batch_size < 1 or context < 1:
        raise SAEError(f"batch_size and context must be at least 1, not {batch_size} and {context}")
    read = site or sae.cfg.hook_name
    write = (sae.cfg.hook_name_out if sae.cfg.transcoder else None) or read
    if not read:
        raise SAEError(
            "this SAE does not name its site (cfg.hook_name is empty); pass site='blocks.N.resid_post'"
        )
    read, write = site_for(model, read), site_for(model, write)  # SAELens's TransformerLens names too
    n_ctx = getattr(model.cfg, "n_ctx", None)
    context = min(context, n_ctx) if n_ctx else context
    rows = _rows(model, texts, context, pack)
    tok = model.tokenizer
    pad = next(
        (
            int(v)
            for v in (getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None))
            if v is not None
        ),
        0,
    )
    sites = list(dict.fromkeys([read, write]))
    sums = dict(sq=0.0, xx=0.0, l0=0.0, n=0, ce_clean=0.0, ce_sp=0.0, ce_zero=0.0, n_pred=0)
    x_sum: torch.Tensor | None = None
    fires = torch.zeros(sae.cfg.d_sae, dtype=torch.int64)
    was_training = sae.training
    sae.eval()
    try:
        for ids, mask in _batches(rows, batch_size, pad):
            batch = {"input_ids": ids, "attention_mask": mask}
            clean = model.run(batch, cache=sites)
            tokens, mask_run = clean.tokens, clean.attention_mask
            assert tokens is not None and mask_run is not None  # the batch holds both input_ids and a mask
            keep = mask_run.bool()
            logits = logits_of(clean, "evaluate")  # [batch, pos, d_vocab]
            x = clean.cache[read]
            target = clean.cache[write]
            x_hat = sae.decode(z := sae.encode(x))
            skip = sae.skip_out(x) if getattr(sae.cfg, "skip", False) else None
            x_hat = x_hat if skip is None else x_hat + skip  # a skip transcoder's x @ W_skip.T
            t, h, zz = target.float()[keep], x_hat.float()[keep], z[keep]
            sums["sq"] += float((t - h).pow(2).sum())
            sums["xx"] += float(t.pow(2).sum())
            x_sum = t.sum(0) if x_sum is None else x_sum + t.sum(0)
            sums["n"] += t.shape[0]
            active = zz > 0
            sums["l0"] += float(active.sum())
            fires += active.sum(0).cpu()
            s, n = _ce(logits, tokens, keep)
            del clean, logits
            sums["ce_clean"] += s
            sums["n_pred"] += n
            spliced = model.run(batch, interventions={write: Set(x_hat.to(target.dtype))})
            sums["ce_sp"] += _ce(logits_of(spliced, "evaluate"), tokens, keep)[0]
            del spliced
            zero = model.run(batch, interventions={write: Ablate("zero")})
            sums["ce_zero"] += _ce(logits_of(zero, "evaluate"), tokens, keep)[0]
            del zero
            if max_tokens is not None and sums["n"] >= max_tokens:
                break
    finally:
        sae.train(was_training)
    assert x_sum is not None
    n, n_pred = sums["n"], max(1, sums["n_pred"])
    var = sums["xx"] - float(x_sum.pow(2).sum()) / n
    ce_clean, ce_sp, ce_zero = sums["ce_clean"] / n_pred, sums["ce_sp"] / n_pred, sums["ce_zero"] / n_pred
    denom = ce_zero - ce_clean
    result = EvalResult(
        l0=sums["l0"] / n,
        fvu=sums["sq"] / max(var, 1e-12),
        mse=sums["sq"] / n,
        dead_fraction=float((fires == 0).float().mean()),
        dense_fraction=float((fires > 0.1 * n).float().mean()),
        ce_clean=ce_clean,
        ce_spliced=ce_sp,
        ce_zero=ce_zero,
        ce_loss_recovered=(ce_zero - ce_sp) / denom if abs(denom) > 1e-12 else float("nan"),
        n_tokens=int(n),
        site=write,
    )
    _warn_if_useless(result, sae)
    return result


def _warn_if_useless(res: EvalResult, sae: Any) -> None:
    """Silent useless results: an SAE worse than the mean, or worse than zero-ablating its site."""
    name = "transcoder" if sae.cfg.transcoder else "SAE"
    if res.ce_loss_recovered < 0 or res.fvu > 1.0:
        warnings.warn(
            f"this {name} is worse than useless at {res.site} (FVU {res.fvu:.2f}, CE loss recovered "
            f"{res.ce_loss_recovered:.2f}; a useful one has FVU below 1 and CE loss recovered near 1): it is "
            "probably undertrained, so train it for more steps or on more data, and check that it was trained "
            "on this site of this model",
            SAEWarning,
            stacklevel=3,
        )
