"""Render a ``ReportData`` as a self-contained HTML page.

The lens and DLA sections come from beside their techniques (``lens/_html.py``,
``attribution/_dla_html.py``); this module adds the report-only sections and assembles the page.

Everything is inline: CSS in a ``<style>`` block, charts as SVG, hover text as SVG ``<title>`` elements
and ``title`` attributes, the lens view switch as CSS radio buttons. No script, no font, no URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _render as svg
from .._render import esc, show_token, standalone
from .._render import quoted as _q
from ..attribution._dla_html import dla_section_html
from ..lens._html import lens_section_html
from ._techniques import techniques

if TYPE_CHECKING:
    from ._build import HeadPattern, ReportData


# ---- attention patterns ---------------------------------------------------------------------------


def patterns_section_html(patterns: list[HeadPattern], tokens: list[str], max_grid: int = 48) -> str:
    if not patterns:
        return (
            '<p class="how">No attention patterns: --top-heads was 0 or the model does not expose them.</p>'
        )
    n = len(tokens)
    parts = [
        '<p class="how">The heads with the largest |direct contribution| above, in that order. Rows are query '
        "(destination) positions, columns are key (source) positions; each row sums to 1. The bottom row is the "
        "last position, the one whose prediction is attributed: a head that moves the answer usually attends "
        "there to the answer's earlier occurrence.</p>",
        svg.colorbar(svg.sequential, lo=0, hi=1, label="attention probability",
                     ticks=[(0, "0"), (0.5, "0.5"), (1, "1")], width=200),
        '<div class="row">',
    ]  # fmt: skip
    for hp in patterns:
        pat = hp.pattern  # [q_pos, k_pos]
        last = pat[-1]
        best = last.topk(min(3, n)).indices.tolist()
        attends = ", ".join(f"{_q(tokens[k])}·{k} {float(last[k]):.2f}" for k in best)
        parts.append('<div class="head-card">')
        parts.append(f"<h3>L{hp.layer}H{hp.head} <span class='sub'>DLA {hp.dla:+.3f}</span></h3>")
        parts.append(f'<div class="sub">last token attends to: {esc(attends)}</div>')
        if n <= max_grid:
            labels = [f"{show_token(t, 10)} ·{i}" for i, t in enumerate(tokens)]
            fills = [
                [svg.sequential(float(pat[q, k])) if k <= q else "#ffffff" for k in range(n)]
                for q in range(n)
            ]
            titles = [
                [
                    f"query {_q(tokens[q])}·{q} → key {_q(tokens[k])}·{k}: {float(pat[q, k]):.3f}"
                    for k in range(n)
                ]
                for q in range(n)
            ]
            cell = max(9, min(17, 380 // max(n, 1)))
            parts.append(
                svg.heatmap(fills, row_labels=labels, col_labels=labels, titles=titles, cell_w=cell, cell_h=cell,
                            font=10, x_title="key (attended-to) token", y_title="query token")
            )  # fmt: skip
        else:
            vmax = float(last.max()) or 1.0
            chips = svg.sequential_tokens(
                tokens, last.tolist(), vmax=vmax, titles=[f"{float(v):.3f}" for v in last.tolist()]
            )
            parts.append(f'<div style="max-width:640px">{chips}</div>')
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


# ---- the full report ------------------------------------------------------------------------------


def render(data: ReportData) -> str:
    """The complete report page."""
    cfg = data.cfg
    attributed = f"logit({_q(data.target_str)})"
    if data.baseline is not None:
        attributed += f" − logit({_q(data.baseline_str or '')})"
    meta = (
        f"model <b>{esc(data.model_name)}</b> · {cfg.n_layers} layers · d_model {cfg.d_model} · "
        f"{cfg.n_heads} heads · vocab {cfg.d_vocab:,} · {len(data.tokens)} prompt tokens · {esc(data.created)}"
        if cfg.d_vocab
        else f"model <b>{esc(data.model_name)}</b> · {esc(data.created)}"
    )
    body = [
        "<header><h1>tsi report</h1>",
        f'<div class="meta">{meta}</div>',
        f'<div class="prompt">{esc(data.prompt)}</div>',
        f'<div class="meta">Explained token: <b>{esc(_q(data.target_str))}</b> ({esc(data.target_source)}); '
        f"attributed quantity: <b>{esc(attributed)}</b> at the last position.</div></header>",
    ]
    if data.notes:
        body.append(
            '<div class="notes"><ul>' + "".join(f"<li>{esc(n)}</li>" for n in data.notes) + "</ul></div>"
        )
    body.append(_section("tokens", "1. Tokens and next-token prediction", _tokens_html(data)))
    body.append(_section("lens", "2. Logit lens", lens_section_html(data.lens)))
    body.append(_section("dla", "3. Direct logit attribution", dla_section_html(data.dla)))
    body.append(
        _section(
            "patterns",
            "4. Attention patterns of the top heads",
            patterns_section_html(data.patterns, data.str_tokens),
        )
    )
    body.append(_section("saliency", "5. Input saliency (gradient × input)", _saliency_html(data)))
    registered = techniques()
    for number, (name, result) in enumerate(data.techniques.items(), start=6):
        technique = registered.get(name)
        if technique is not None:  # unregistered since the report was computed: nothing to render it with
            body.append(_section(f"t-{name}", f"{number}. {technique.title}", technique.section_html(result)))
    steps = ", ".join(f"{k.split(' (')[0].lower()} {v:.1f}s" for k, v in data.timings.items())
    body.append(
        f"<footer>Made by torch-shard-interpret (tsi report). Timings: {esc(steps)}. Tokens are shown with "
        "␣ for a space and ↵ for a newline. This file is self-contained and works offline.</footer>"
    )
    return standalone(f"tsi report: {data.prompt[:60]}", "".join(body))


def _section(anchor: str, title: str, inner: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{inner}</section>'


def _tokens_html(data: ReportData) -> str:
    chips = "".join(
        f'<span class="chip" title="id {tid}">{esc(show_token(t))}<sub>{i}</sub></span>'
        for i, (t, tid) in enumerate(zip(data.str_tokens, data.tokens, strict=True))
    )
    top = data.top
    vmax = max((p for _, _, p, _ in top), default=1.0)
    rows = "".join(
        f'<tr><td class="num">{k + 1}</td><td class="tokcell">{esc(_q(tok))}</td><td class="num">{p:.4f}</td>'
        f'<td class="num">{logit:.2f}</td><td><div class="hbar" style="width:{max(1.0, 220 * p / vmax):.1f}px;'
        f'background:{"#6a51a3" if tid == data.target else "#9e9ac8"}"></div></td></tr>'
        for k, (tok, tid, p, logit) in enumerate(top)
    )
    return (
        f'<p class="how">The prompt as the model sees it ({len(data.tokens)} tokens; hover a token for its id), '
        "and the model's top 10 predictions for the next token, with probabilities and logits.</p>"
        f"<div>{chips}</div><h3>Top 10 next-token predictions</h3>"
        '<table class="t"><tr><th class="num">#</th><th>token</th><th class="num">probability</th>'
        f'<th class="num">logit</th><th></th></tr>{rows}</table>'
    )


def _saliency_html(data: ReportData) -> str:
    s = data.saliency
    vmax = float(s.abs().max()) or 1.0
    titles = [
        f"position {i}: grad×input {float(v):+.4f}, |grad| {float(g):.4f}"
        for i, (v, g) in enumerate(zip(s.tolist(), data.saliency_norm.tolist(), strict=True))
    ]
    chips = svg.colored_tokens(data.str_tokens, s.tolist(), vmax=vmax, titles=titles)
    order = s.abs().argsort(descending=True)[: min(8, len(s))].tolist()
    rows = [(f"{_q(data.str_tokens[i])} ·{i}", float(s[i]), f"{float(s[i]):+.3f}") for i in order]
    legend = svg.colorbar(
        lambda t: svg.diverging(2 * t - 1, 1.0), lo=-vmax, hi=vmax, label="gradient × input",
        ticks=[(-vmax, f"{-vmax:.2f}"), (0, "0"), (vmax, f"+{vmax:.2f}")], width=220,
    )  # fmt: skip
    attributed = f"logit({_q(data.target_str)})"
    if data.baseline is not None:
        attributed += f" − logit({_q(data.baseline_str or '')})"
    return (
        f'<p class="how">The gradient of {esc(attributed)} with respect to each input embedding, dotted with that '
        "embedding: a first-order estimate of how much the quantity would fall if the token's embedding were "
        "removed. Red raises it, blue lowers it. A local, linear view: large values mark sensitive tokens, "
        "not proven causes (activation patching tests causes).</p>"
        f'{legend}<div style="margin:6px 0 10px">{chips}</div>'
        '<h3>Largest |score|</h3><table class="t"><tr><th>token · position</th><th class="num">grad × input</th>'
        f"<th></th></tr>{svg.signed_rows(rows, vmax)}</table>"
    )
