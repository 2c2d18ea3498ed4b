"""evaluate: L0, FVU, dead and dense latents, and cross-entropy loss recovered with the SAE spliced in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..core._interventions import Ablate, Set
from ._config import SAEError


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
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.site}: L0 {self.l0:.1f}, FVU {self.fvu:.3f}, dead {self.dead_fraction:.1%}, "
            f"dense {self.dense_fraction:.1%}, CE loss recovered {self.ce_loss_recovered:.3f} "
            f"(clean {self.ce_clean:.3f}, spliced {self.ce_spliced:.3f}, zero {self.ce_zero:.3f}; "
            f"{self.n_tokens} tokens)"
        )


def _ce(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None) -> tuple[float, int]:
    """Summed next-token cross-entropy and the number of predicted tokens."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)
    m = (
        mask[:, 1:].bool() & mask[:, :-1].bool()
        if mask is not None
        else torch.ones_like(nll, dtype=torch.bool)
    )
    return float(nll[m].sum()), int(m.sum())


@torch.no_grad()
def evaluate(
    model: Any, sae: Any, texts: str | Sequence[str], site: str | None = None, batch_size: int = 8
) -> EvalResult:
    """Measure ``sae`` on ``model`` over ``texts``. ``site`` defaults to ``sae.cfg.hook_name`` (for a
    transcoder: it reads ``hook_name`` and its prediction replaces ``hook_name_out``)."""
    if isinstance(texts, str):
        texts = [texts]
    if not texts:
        raise SAEError("evaluate needs at least one text")
    read = site or sae.cfg.hook_name
    write = (sae.cfg.hook_name_out if sae.cfg.transcoder else None) or read
    if not read:
        raise SAEError(
            "this SAE does not name its site (cfg.hook_name is empty); pass site='blocks.N.resid_post'"
        )
    sums = dict(sq=0.0, x=0.0, xx=0.0, l0=0.0, n=0, ce_clean=0.0, ce_sp=0.0, ce_zero=0.0, n_pred=0)
    x_sum = None
    fires = torch.zeros(sae.cfg.d_sae, dtype=torch.int64)
    was_training = sae.training
    sae.eval()
    for i in range(0, len(texts), batch_size):
        chunk = list(texts[i : i + batch_size])
        sites = list(dict.fromkeys([read, write]))
        clean = model.run(chunk, cache=sites)
        if clean.tokens is None:
            raise SAEError("evaluate needs text inputs and a model with a tokenizer")
        mask = clean.attention_mask
        x = clean.cache[read]
        target = clean.cache[write].float()
        z = sae.encode(x)
        x_hat = sae.decode(z)
        keep = mask.bool() if mask is not None else torch.ones(x.shape[:2], dtype=torch.bool)
        t, h, zz = target[keep], x_hat.float()[keep], z[keep]
        sums["sq"] += float((t - h).pow(2).sum())
        sums["xx"] += float(t.pow(2).sum())
        x_sum = t.sum(0) if x_sum is None else x_sum + t.sum(0)
        sums["n"] += t.shape[0]
        active = zz > 0
        sums["l0"] += float(active.sum())
        fires += active.sum(0).cpu()
        s, n = _ce(clean.logits, clean.tokens, mask)
        sums["ce_clean"] += s
        sums["n_pred"] += n
        spliced = model.run(chunk, interventions={write: Set(x_hat.to(clean.cache[write].dtype))})
        sums["ce_sp"] += _ce(spliced.logits, clean.tokens, mask)[0]
        zero = model.run(chunk, interventions={write: Ablate("zero")})
        sums["ce_zero"] += _ce(zero.logits, clean.tokens, mask)[0]
    sae.train(was_training)
    n, n_pred = sums["n"], max(1, sums["n_pred"])
    var = sums["xx"] - float(x_sum.pow(2).sum()) / n
    ce_clean, ce_sp, ce_zero = sums["ce_clean"] / n_pred, sums["ce_sp"] / n_pred, sums["ce_zero"] / n_pred
    denom = ce_zero - ce_clean
    return EvalResult(
        l0=sums["l0"] / n,
        fvu=sums["sq"] / max(var, 1e-12),
        mse=sums["sq"] / n,
        dead_fraction=float((fires == 0).float().mean()),
        dense_fraction=float((fires > 0.1 * n).float().mean()),
        ce_clean=ce_clean,
        ce_spliced=ce_sp,
        ce_zero=ce_zero,
        ce_loss_recovered=(ce_zero - ce_sp) / denom if abs(denom) > 1e-12 else float("nan"),
        n_tokens=n,
        site=write,
    )
