"""``tsi.diff.compare``: how far two models of one architecture differ, site by site and layer by layer.

d = tsi.diff.compare(model_a, model_b, texts)
d.divergence        # {site: sum ||a - b||^2 / sum ||a||^2 over tokens}: 0 for identical models
d.cosine            # {site: mean cosine between a and b}
d.lens_kl           # {site: KL(P_a || P_b)} of each model's logit lens on its own residual, in nats
d.logits_kl         # KL of the final next-token distributions
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .._progress import progress as bar_of
from .._render import esc, fmt, hbar_rows, standalone
from ..core._model import Model
from ._pairs import common_sites, paired_batches, rows


@dataclass
class DiffResult:
    """Per-site divergence between two models on one corpus (see the module docs)."""

    divergence: dict[str, float]
    cosine: dict[str, float]
    lens_kl: dict[str, float] = field(default_factory=dict)
    logits_kl: float | None = None
    n_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"divergence": self.divergence, "cosine": self.cosine, "lens_kl": self.lens_kl,
                "logits_kl": self.logits_kl, "n_rows": self.n_rows}  # fmt: skip

    def to_html(self, page: bool = False) -> str:
        vmax = max(self.divergence.values(), default=0.0) or 1.0
        div = hbar_rows([(s, v, fmt(v)) for s, v in self.divergence.items()], vmax=vmax)
        body = (
            f"<h2>Activation divergence per site</h2><p>relative squared difference "
            f"sum||a-b||&sup2;/sum||a||&sup2; over {self.n_rows} rows</p><table>{div}</table>"
        )
        if self.lens_kl:
            kmax = max(self.lens_kl.values()) or 1.0
            lens = hbar_rows([(s, v, fmt(v)) for s, v in self.lens_kl.items()], vmax=kmax, colour="#b04a31")
            body += f"<h2>Logit-lens KL(A || B) per layer (nats)</h2><table>{lens}</table>"
        if self.logits_kl is not None:
            body += f"<p>final next-token KL(A || B): {esc(fmt(self.logits_kl))} nats</p>"
        return standalone("model diff", body) if page else body


def _kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """``[n]`` KL(P_a || P_b) of rows of logits."""
    la, lb = logits_a.float().log_softmax(-1), logits_b.float().log_softmax(-1)
    return (la.exp() * (la - lb)).sum(-1).clamp_min(0)


def compare(
    model_a: Model,
    model_b: Model,
    texts: Any,
    sites: str | Sequence[str] = "blocks.*.resid_post",
    *,
    lens: bool = True,
    batch_size: int = 8,
    progress: bool = True,
) -> DiffResult:
    """Compare two models on ``texts`` (or any inputs both accept). ``lens``: also the logit lens per layer
    (``blocks.*.resid_post`` sites only, on models whose adapter names ``final_norm`` and ``logits``)."""
    from ..lens._logit import unembed

    names = common_sites(model_a, model_b, sites)
    has_lens = lens and {"final_norm", "logits"} <= set(model_a.sites())
    sq, ref, cos, kls = ({n: 0.0 for n in names} for _ in range(4))
    n_rows, final_kl = 0, 0.0
    n = 1 if isinstance(texts, str) else len(texts)
    with bar_of(n, desc="diff", unit="input", enabled=progress) as bar:
        for ra, rb, mask in paired_batches(model_a, model_b, texts, names, batch_size, stop_early=False):
            for s in names:
                a, b = rows(ra.cache[s], mask), rows(rb.cache[s], mask)
                sq[s] += float((a - b).pow(2).sum())
                ref[s] += float(a.pow(2).sum())
                cos[s] += float(torch.nn.functional.cosine_similarity(a, b, dim=-1).sum())
                if has_lens and s.endswith("resid_post"):
                    kls[s] += float(_kl(unembed(model_a, a), unembed(model_b, b)).sum())
            if ra.logits is not None and rb.logits is not None:
                final_kl += float(_kl(rows(ra.logits, mask), rows(rb.logits, mask)).sum())
            n_rows += len(rows(ra.cache[names[0]], mask))
            bar.update(len(ra.cache[names[0]]))
    div = {s: (sq[s] / ref[s] if ref[s] > 0 else float(sq[s] > 0)) for s in names}
    lens_kl = {s: kls[s] / n_rows for s in names if has_lens and s.endswith("resid_post")}
    return DiffResult(div, {s: cos[s] / n_rows for s in names}, lens_kl, final_kl / n_rows, n_rows)
