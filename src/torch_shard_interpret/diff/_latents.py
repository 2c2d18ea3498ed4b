"""``train_crosscoder``: paired activations -> a BatchTopK crosscoder -> latents classified by decoder norms.

cc = tsi.diff.train_crosscoder(model_a, model_b, texts, site="blocks.6.resid_post")
cc.relative_norm     # [d_latent] ||d_b|| / (||d_a|| + ||d_b||)
cc.classes           # "a_only" (< 0.1), "b_only" (> 0.9), "shared" (0.3..0.7), "other", "dead"
cc.latent_scaling    # [d_latent] beta_A / beta_B: how much of each latent's B-decoder direction, scaled by
                     # its activations, model A's activations hold (Minder et al.'s Latent Scaling; ~0 for a
                     # latent that is truly B-only, ~1 for one whose A-side was only shrunk away)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_path, atomic_write
from .._render import colored_tokens, esc, fmt, hbar_rows
from ..core._model import Model
from ._crosscoder import Crosscoder, fit_crosscoder
from ._pairs import DiffError, common_sites, paired_batches, rows

A_ONLY, B_ONLY, SHARED = 0.1, 0.9, (0.3, 0.7)


@dataclass
class CrosscoderResult:
    """A trained crosscoder and its latents' classification (see the module docs)."""

    crosscoder: Crosscoder
    site: str
    relative_norm: torch.Tensor
    frequency: torch.Tensor
    """``[d_latent]`` fraction of the training rows on which each latent fires."""
    latent_scaling: torch.Tensor
    fve: dict[str, float]
    """Fraction of variance explained, per model (``"a"``, ``"b"``)."""
    losses: list[float] = field(default_factory=list)
    examples: dict[int, list[tuple[list[str], list[float]]]] = field(default_factory=dict)
    """For the top A-only/B-only latents: up to 5 top-activating contexts (tokens, the latent's activation)."""

    @property
    def classes(self) -> list[str]:
        out = []
        for r, f in zip(self.relative_norm.tolist(), self.frequency.tolist(), strict=True):
            if f == 0:
                out.append("dead")
            elif r < A_ONLY:
                out.append("a_only")
            elif r > B_ONLY:
                out.append("b_only")
            elif SHARED[0] <= r <= SHARED[1]:
                out.append("shared")
            else:
                out.append("other")
        return out

    def counts(self) -> dict[str, int]:
        c = self.classes
        return {k: c.count(k) for k in ("shared", "a_only", "b_only", "other", "dead")}

    def latents(self, kind: str, n: int = 10) -> list[int]:
        """Up to ``n`` latents of class ``kind``, the most frequent first."""
        idx = [i for i, c in enumerate(self.classes) if c == kind]
        return sorted(idx, key=lambda i: -float(self.frequency[i]))[:n]

    def to_dict(self) -> dict[str, Any]:
        return {"site": self.site, "d_latent": self.crosscoder.d_latent, "k": self.crosscoder.k,
                "counts": self.counts(), "fve": self.fve, "relative_norm": self.relative_norm.tolist(),
                "frequency": self.frequency.tolist(), "latent_scaling": self.latent_scaling.tolist(),
                "final_loss": self.losses[-1] if self.losses else None}  # fmt: skip

    def to_html(self) -> str:
        counts = self.counts()
        total = max(1, sum(counts.values()))
        body = f"<h2>Crosscoder latents at {esc(self.site)}</h2>"
        body += f"<p>FVE A {fmt(self.fve['a'])}, B {fmt(self.fve['b'])}</p>"
        body += (
            "<table>" + hbar_rows([(k, v / total, str(v)) for k, v in counts.items()], vmax=1.0) + "</table>"
        )
        for kind, title in (("b_only", "B-only latents"), ("a_only", "A-only latents")):
            body += f"<h3>{title}</h3>"
            found = self.latents(kind)
            if not found:
                body += "<p>none</p>"
            for j in found:
                body += (f"<h4>latent {j}: relative norm {fmt(float(self.relative_norm[j]))}, fires on "
                         f"{fmt(float(self.frequency[j]))} of rows, latent scaling {fmt(float(self.latent_scaling[j]))}</h4>")  # fmt: skip
                for toks, acts in self.examples.get(j, []):
                    vmax = max(max(acts), 1e-9)
                    body += (
                        "<div>"
                        + colored_tokens(toks, acts, vmax=vmax, titles=[fmt(a) for a in acts])
                        + "</div>"
                    )
        return body

    def save(self, path: str | Path) -> Path:
        """``crosscoder.safetensors`` (weights) + ``crosscoder.json`` (config and statistics)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in self.crosscoder.state_dict().items()}
        with atomic_path(path / "crosscoder.safetensors") as tmp:
            save_file(tensors, str(tmp))
        meta = {**self.to_dict(), "d_a": self.crosscoder.d_a, "d_b": self.crosscoder.d_b}
        atomic_write(path / "crosscoder.json", json.dumps(meta))
        return path


def load_crosscoder(path: str | Path) -> CrosscoderResult:
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "crosscoder.json").is_file():
        raise DiffError(
            f"no saved crosscoder in {str(path)!r}: expected crosscoder.json and crosscoder.safetensors"
        )
    meta = json.loads((path / "crosscoder.json").read_text())
    cc = Crosscoder(meta["d_a"], meta["d_b"], meta["d_latent"], meta["k"])
    cc.load_state_dict(load_file(str(path / "crosscoder.safetensors")))
    cc.eval()
    t = torch.tensor
    return CrosscoderResult(
        cc, meta["site"], cc.relative_norm(), t(meta["frequency"]), t(meta["latent_scaling"]), meta["fve"]
    )


def paired_rows(model_a: Model | None, model_b: Model | None, data: Any, site: str, batch_size: int = 8):
    """``(x_a [n, d], x_b [n, d], contexts)``: contexts[i] = (input index, position, token ids) or None."""
    if isinstance(data, tuple) and len(data) == 2 and all(hasattr(s, "read") for s in data):
        a, b = data[0].read(site), data[1].read(site)
        if a.shape != b.shape:
            raise DiffError(
                f"the two stores hold {list(a.shape)} and {list(b.shape)} rows at {site}; harvest both on the same texts"
            )
        return a.float().flatten(1), b.float().flatten(1), None
    if model_a is None or model_b is None:
        raise DiffError(
            "give both models to read activations from, or a pair of stores (store_a, store_b) as data"
        )
    common_sites(model_a, model_b, site)
    xa, xb, ctx = [], [], []
    offset = 0
    for ra, rb, mask in paired_batches(model_a, model_b, data, [site], batch_size):
        xa.append(rows(ra.cache[site], mask))
        xb.append(rows(rb.cache[site], mask))
        if ra.tokens is not None and ra.cache[site].ndim >= 3:
            m = mask.bool() if mask is not None else torch.ones_like(ra.tokens, dtype=torch.bool)
            for i in range(len(ra.tokens)):
                for p in m[i].nonzero().flatten().tolist():
                    ctx.append((offset + i, p, ra.tokens[i][m[i]].tolist()))
        offset += len(ra.cache[site])
    return torch.cat(xa), torch.cat(xb), ctx or None


def train_crosscoder(
    model_a: Model | None, model_b: Model | None, texts_or_stores: Any, site: str, *,
    d_latent: int | None = None, k: int = 8, steps: int = 2000, batch_size: int = 1024, lr: float = 1e-3,
    seed: int = 0, batch: int = 8, progress: bool = True,
) -> CrosscoderResult:  # fmt: skip
    """Train a BatchTopK crosscoder on paired activations of ``site`` and classify its latents.

    ``texts_or_stores``: inputs both models accept (texts, token ids, tensors), or a pair of activation stores
    ``(store_a, store_b)`` harvested on the same texts. ``d_latent``: default 8 x the width of the site.
    """
    xa, xb, ctx = paired_rows(model_a, model_b, texts_or_stores, site, batch)
    if len(xa) < 2:
        raise DiffError("a crosscoder needs at least 2 paired rows; give more data")
    cc, losses = fit_crosscoder(xa, xb, d_latent or 8 * xa.shape[1], k, steps, batch_size, lr, seed, progress)
    with torch.no_grad():
        z = torch.cat([cc.encode(xa[i : i + 4096], xb[i : i + 4096]) for i in range(0, len(xa), 4096)])
        ra, rb = cc.decode(z)
        ta, tb = xa * cc.scale_a, xb * cc.scale_b
        fve = {"a": 1 - float((ra - ta).pow(2).sum() / (ta - ta.mean(0)).pow(2).sum()),
               "b": 1 - float((rb - tb).pow(2).sum() / (tb - tb.mean(0)).pow(2).sum())}  # fmt: skip
        scaling = latent_scaling(cc, z, ta, tb)
    res = CrosscoderResult(cc, site, cc.relative_norm(), (z > 0).float().mean(0), scaling, fve, losses)
    if ctx is not None and model_a is not None:
        res.examples = top_examples(model_a, res, z, ctx)
    return res


def latent_scaling(cc: Crosscoder, z: torch.Tensor, ta: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
    """``[d_latent]`` beta_A / beta_B with beta_M = <f, x_M . d_b> / (<f, f> ||d_b||^2): the least-squares scale
    of each latent's B-decoder direction (times its activation) in each model's (centred) activations."""
    d = cc.W_dec_b.detach()  # [d_latent, d]
    num_a = (
        (z * ((ta - cc.b_dec_a.detach()) @ d.T)).sum(0) if ta.shape[1] == d.shape[1] else torch.zeros(len(d))
    )
    num_b = (z * ((tb - cc.b_dec_b.detach()) @ d.T)).sum(0)
    return num_a / num_b.where(num_b.abs() > 1e-12, torch.full_like(num_b, float("nan")))


def top_examples(
    model: Model, res: CrosscoderResult, z: torch.Tensor, ctx: Sequence, n: int = 5, width: int = 8
):
    out: dict[int, list[tuple[list[str], list[float]]]] = {}

    for j in res.latents("b_only") + res.latents("a_only"):
        top = z[:, j].topk(min(n, len(z))).indices.tolist()
        out[j] = []
        for r in top:
            if float(z[r, j]) <= 0:
                continue
            _, pos, ids = ctx[r]
            lo = max(0, pos - width)
            toks = model.str_tokens(list(ids[lo : pos + 1]))
            acts = [0.0] * (pos - lo) + [float(z[r, j])]
            out[j].append((list(toks), acts))
    return out
