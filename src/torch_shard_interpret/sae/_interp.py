"""Per-latent statistics and a self-contained HTML feature dashboard (inline CSS and SVG, no CDN, no JS).

stats = tsi.sae.latent_stats(model, sae, texts)        # or a store holding the site and its token ids
tsi.sae.latent_html(stats, 12)                          # an HTML fragment for one latent (reused by the report)
tsi.sae.dashboard(model, sae, texts, out="dash/")       # index.html + latent_<id>.html
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._render import esc, standalone
from ..core._result import fields_dict
from ..core._tokens import str_tokens
from ._config import SAEError

if TYPE_CHECKING:
    from ..core._model import Model

MAX_NONZERO = 5_000_000  # activation values kept for histograms


@dataclass
class LatentStats:
    """What ``latent_stats`` found, for every latent of one SAE."""

    site: str
    n_tokens: int
    frequency: torch.Tensor
    """``[d_sae]`` fraction of tokens on which the latent is active."""
    max_act: torch.Tensor
    """``[d_sae]`` largest activation."""
    mean_act: torch.Tensor
    """``[d_sae]`` mean activation where active."""
    top_values: torch.Tensor
    """``[d_sae, top_k]`` largest activations, descending (zeros when fewer fired)."""
    top_index: torch.Tensor
    """``[d_sae, top_k]`` token index (into ``tokens``) of each."""
    hist_counts: torch.Tensor
    """``[d_sae, n_bins]`` histogram of nonzero activations over ``[0, max_act]``."""
    tokens: torch.Tensor
    """``[n_tokens]`` token id of every row seen."""
    doc: torch.Tensor
    """``[n_tokens]`` which text (or store chunk) each row came from; contexts never cross texts."""
    logit_up: list[list[tuple[str, float]]] = field(default_factory=list)
    """Per latent, the tokens whose logits its decoder direction raises most (``W_dec @ W_U``, no final norm)."""
    logit_down: list[list[tuple[str, float]]] = field(default_factory=list)
    """Per latent, the tokens it lowers most."""
    tokenizer: Any = field(default=None, repr=False)

    @property
    def d_sae(self) -> int:
        return int(self.frequency.shape[0])

    def token_str(self, token_id: int) -> str:
        if self.tokenizer is None:
            return f"<{token_id}>"
        return str_tokens(self.tokenizer, [int(token_id)])[0]

    def contexts(self, latent: int, before: int = 12, after: int = 4) -> list[dict[str, Any]]:
        """The top activating contexts of ``latent``: ``{"value", "tokens", "highlight"}`` each."""
        out = []
        for v, i in zip(self.top_values[latent].tolist(), self.top_index[latent].tolist(), strict=True):
            if v <= 0:
                continue
            lo, hi = max(0, i - before), min(self.n_tokens, i + after + 1)
            same = (self.doc[lo:hi] == self.doc[i]).nonzero().flatten()
            lo, hi = lo + int(same.min()), lo + int(same.max()) + 1
            ids = self.tokens[lo:hi].tolist()
            out.append({"value": v, "tokens": [self.token_str(t) for t in ids], "highlight": i - lo})
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: every field as lists (per latent, ``[d_sae]`` or ``[d_sae][top_k]``; ``logit_up`` and
        ``logit_down`` as ``[token, value]`` pairs) and ``d_sae``."""
        return fields_dict(self, exclude={"tokenizer"}, d_sae=self.d_sae)

    def to_html(self, latents: Sequence[int] | None = None, title: str | None = None) -> str:
        """One self-contained page with a fragment per latent (default: the 20 most frequent)."""
        if latents is None:
            latents = self.frequency.argsort(descending=True)[:20].tolist()
        body = "\n".join(latent_html(self, int(i)) for i in latents)
        return _page(title or f"SAE latents at {self.site}", body)


@torch.no_grad()
def latent_stats(
    model: Model | None,
    sae: Any,
    texts_or_store: Any,
    site: str | None = None,
    *,
    top_k: int = 10,
    n_bins: int = 24,
    batch_size: int = 8,
    chunk_rows: int = 8192,
    logit_k: int = 8,
) -> LatentStats:
    """Statistics of every latent over texts (the model is run) or a store (``read`` + ``tokens``)."""
    site = site or sae.cfg.hook_name
    if not site:
        raise SAEError(
            "this SAE does not name its site (cfg.hook_name is empty); pass site='blocks.N.resid_post'"
        )
    d = sae.cfg.d_sae
    acc = _Acc(d, top_k)
    tokenizer = getattr(model, "tokenizer", None) if model is not None else None
    if hasattr(texts_or_store, "read") and hasattr(texts_or_store, "tokens"):
        store = texts_or_store
        for c, start in enumerate(range(0, len(store), chunk_rows)):
            stop = min(len(store), start + chunk_rows)
            x = torch.as_tensor(store.read(site, start, stop))
            ids = torch.as_tensor(store.tokens(start, stop)).reshape(-1)
            acc.add(sae.encode(x.reshape(-1, x.shape[-1])), ids, torch.full_like(ids, c))
    else:
        texts = [texts_or_store] if isinstance(texts_or_store, str) else list(texts_or_store)
        if not texts or model is None:
            raise SAEError("latent_stats needs a model and a non-empty list of texts (or a store)")
        for i in range(0, len(texts), batch_size):
            chunk = texts[i : i + batch_size]
            run = model.run(chunk, cache=[site], return_logits=False)
            x = run.cache[site]
            keep = (
                run.attention_mask.bool()
                if run.attention_mask is not None
                else torch.ones(x.shape[:2], dtype=torch.bool)
            )
            doc = torch.arange(i, i + len(chunk))[:, None].expand(x.shape[:2])
            assert run.tokens is not None  # texts always give their token ids
            acc.add(sae.encode(x[keep]), run.tokens[keep], doc[keep])
    stats = acc.finish(site, n_bins, tokenizer)
    if model is not None:
        _logit_effects(model, sae, stats, logit_k)
    return stats


class _Acc:
    def __init__(self, d: int, top_k: int):
        self.d, self.top_k = d, top_k
        self.count = torch.zeros(d, dtype=torch.int64)
        self.sum = torch.zeros(d, dtype=torch.float64)
        self.max = torch.zeros(d)
        self.top_v = torch.zeros(0, d)
        self.top_i = torch.zeros(0, d, dtype=torch.int64)
        self.nz_lat: list[torch.Tensor] = []
        self.nz_val: list[torch.Tensor] = []
        self.n_nz = 0
        self.tokens: list[torch.Tensor] = []
        self.docs: list[torch.Tensor] = []
        self.n = 0

    def add(self, z: torch.Tensor, ids: torch.Tensor, doc: torch.Tensor) -> None:
        z = z.float().cpu()  # [n, d_sae]
        active = z > 0
        self.count += active.sum(0)
        self.sum += z.sum(0).double()
        self.max = torch.maximum(self.max, z.max(0).values)
        k = min(self.top_k, z.shape[0])
        v, i = z.topk(k, dim=0)  # [k, d_sae]
        v, i = torch.cat([self.top_v, v]), torch.cat([self.top_i, i + self.n])
        keep = v.topk(min(self.top_k, v.shape[0]), dim=0).indices
        self.top_v, self.top_i = v.gather(0, keep), i.gather(0, keep)
        if self.n_nz < MAX_NONZERO:
            rows, lat = active.nonzero(as_tuple=True)
            self.nz_lat.append(lat)
            self.nz_val.append(z[rows, lat])
            self.n_nz += lat.numel()
        self.tokens.append(ids.reshape(-1).cpu().long())
        self.docs.append(doc.reshape(-1).cpu().long())
        self.n += z.shape[0]

    def finish(self, site: str, n_bins: int, tokenizer: Any) -> LatentStats:
        hist = torch.zeros(self.d * n_bins)
        if self.nz_lat:
            lat, val = torch.cat(self.nz_lat), torch.cat(self.nz_val)
            b = (val / self.max[lat].clamp_min(1e-12) * n_bins).long().clamp(0, n_bins - 1)
            hist.index_add_(0, lat * n_bins + b, torch.ones_like(val))
        pad = self.top_k - self.top_v.shape[0]
        top_v, top_i = self.top_v.t(), self.top_i.t()
        if pad > 0:
            top_v = torch.cat([top_v, torch.zeros(self.d, pad)], 1)
            top_i = torch.cat([top_i, torch.zeros(self.d, pad, dtype=torch.int64)], 1)
        return LatentStats(
            site=site,
            n_tokens=self.n,
            frequency=self.count.float() / max(1, self.n),
            max_act=self.max,
            mean_act=(self.sum / self.count.clamp_min(1)).float(),
            top_values=top_v.contiguous(),
            top_index=top_i.contiguous(),
            hist_counts=hist.view(self.d, n_bins),
            tokens=torch.cat(self.tokens) if self.tokens else torch.zeros(0, dtype=torch.int64),
            doc=torch.cat(self.docs) if self.docs else torch.zeros(0, dtype=torch.int64),
            tokenizer=tokenizer,
        )


def _unembedding(model: Model) -> torch.Tensor | None:
    module = getattr(model, "module", model)
    get = getattr(module, "get_output_embeddings", None)
    out = get() if callable(get) else None
    w = getattr(out, "weight", None)
    return w.detach() if torch.is_tensor(w) else None


def _logit_effects(model: Model, sae: Any, stats: LatentStats, k: int) -> None:
    w_u = _unembedding(model)  # [d_vocab, d_model]
    if w_u is None or w_u.shape[1] != sae.cfg.out_dim:
        return
    w_u = w_u.float().cpu()
    w_dec = sae.W_dec.detach().float().cpu()
    for s in range(0, w_dec.shape[0], 256):
        eff = w_dec[s : s + 256] @ w_u.t()  # [chunk, d_vocab]
        up, down = eff.topk(k, dim=-1), (-eff).topk(k, dim=-1)
        for row in range(eff.shape[0]):
            stats.logit_up.append(
                [
                    (stats.token_str(t), v)
                    for t, v in zip(up.indices[row].tolist(), up.values[row].tolist(), strict=True)
                ]
            )
            stats.logit_down.append(
                [
                    (stats.token_str(t), -v)
                    for t, v in zip(down.indices[row].tolist(), down.values[row].tolist(), strict=True)
                ]
            )


# ---- HTML ---------------------------------------------------------------------------------------
def _esc_tok(t: str) -> str:
    return esc(t.replace("\n", "\u21b5"))


def _hist_svg(counts: torch.Tensor, max_act: float, width: int = 260, height: int = 70) -> str:
    c = counts.tolist()
    top = max(c) if c and max(c) > 0 else 1.0
    bw = width / max(1, len(c))
    bars = "".join(
        f'<rect x="{i * bw:.1f}" y="{height - 14 - (v / top) * (height - 18):.1f}" width="{max(bw - 1, 1):.1f}" '
        f'height="{(v / top) * (height - 18):.1f}" fill="#4a7bd0"><title>{int(v)}</title></rect>'
        for i, v in enumerate(c)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="activation histogram">{bars}'
        f'<text x="0" y="{height - 2}" font-size="10" fill="#555">0</text>'
        f'<text x="{width}" y="{height - 2}" font-size="10" fill="#555" text-anchor="end">{max_act:.3g}</text></svg>'
    )


def latent_html(stats: LatentStats, latent_id: int) -> str:
    """A self-contained HTML fragment (a ``<div class="latent">``, styled by the shared page CSS) describing one latent: frequency,
    histogram, top contexts with the activating token highlighted, and the logit effects."""
    i = int(latent_id)
    if not 0 <= i < stats.d_sae:
        raise SAEError(f"latent {i} is out of range: this SAE has latents 0..{stats.d_sae - 1}")
    freq, mx, mean = float(stats.frequency[i]), float(stats.max_act[i]), float(stats.mean_act[i])
    ctx_rows = []
    for c in stats.contexts(i):
        toks = "".join(
            f'<span class="hi" title="{c["value"]:.3g}">{_esc_tok(t)}</span>'
            if j == c["highlight"]
            else _esc_tok(t)
            for j, t in enumerate(c["tokens"])
        )
        ctx_rows.append(f'<div class="ctx"><span class="v">{c["value"]:.3g}</span>{toks}</div>')
    contexts = "".join(ctx_rows) or '<div class="how">never active on these tokens</div>'
    logits = ""
    if stats.logit_up:
        rows = "".join(
            f'<tr><td class="up">{_esc_tok(a)} {va:+.3g}</td><td class="down">{_esc_tok(b)} {vb:+.3g}</td></tr>'
            for (a, va), (b, vb) in zip(stats.logit_up[i], stats.logit_down[i], strict=True)
        )
        logits = f'<table class="t"><tr><th>promoted</th><th>suppressed</th></tr>{rows}</table>'
    return (
        f'<div class="latent" id="latent-{i}"><h3>Latent {i}</h3>'
        f'<div class="how">{esc(stats.site)} &middot; active on {freq:.3%} of {stats.n_tokens} tokens &middot; '
        f"max {mx:.3g} &middot; mean when active {mean:.3g}</div>"
        f'<div class="row"><div>{_hist_svg(stats.hist_counts[i], mx)}</div><div>{logits}</div></div>'
        f"<h4>Top activations</h4>{contexts}</div>"
    )


def _page(title: str, body: str) -> str:
    return standalone(title, f"<header><h1>{esc(title)}</h1></header>{body}")


def dashboard(
    model: Model | None,
    sae: Any,
    texts_or_store: Any = None,
    out: str | Path = "sae_dashboard",
    *,
    latents: Sequence[int] | None = None,
    n_latents: int = 50,
    stats: LatentStats | None = None,
    site: str | None = None,
) -> Path:
    """Write ``out/index.html`` (a table of latents) and ``out/latent_<id>.html`` for each; returns the index.
    ``latents`` default: the ``n_latents`` most frequently active."""
    if stats is None:
        stats = latent_stats(model, sae, texts_or_store, site=site)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SAEError(f"cannot write the dashboard to {str(out)!r}: {exc.strerror}") from None
    if latents is None:
        alive = (stats.frequency > 0).nonzero().flatten()
        order = stats.frequency[alive].argsort(descending=True)
        latents = alive[order][:n_latents].tolist()
    rows = []
    for i in latents:
        (out / f"latent_{i}.html").write_text(
            _page(
                f"Latent {i} at {stats.site}",
                '<p><a href="index.html">&larr; all latents</a></p>' + latent_html(stats, i),
            ),
            encoding="utf-8",
        )
        ctx = stats.contexts(i, before=0, after=0)
        top = _esc_tok(ctx[0]["tokens"][0]) if ctx else ""
        up = _esc_tok(stats.logit_up[i][0][0]) if stats.logit_up else ""
        rows.append(
            f'<tr><td><a href="latent_{i}.html">{i}</a></td><td>{float(stats.frequency[i]):.3%}</td>'
            f"<td>{float(stats.max_act[i]):.3g}</td><td>{top}</td><td>{up}</td></tr>"
        )
    table = (
        '<table class="t"><tr><th>latent</th><th>frequency</th><th>max</th><th>top token</th>'
        f"<th>most promoted</th></tr>{''.join(rows)}</table>"
    )
    dead = float((stats.frequency == 0).float().mean())
    intro = f'<p class="how">{stats.n_tokens} tokens; {dead:.1%} of {stats.d_sae} latents never fired.</p>'
    index = out / "index.html"
    index.write_text(_page(f"SAE dashboard: {stats.site}", intro + table), encoding="utf-8")
    return index
