"""Render a ``ReportData`` (or one technique's result) as a self-contained HTML page.

Everything is inline: CSS in a ``<style>`` block, charts as SVG, hover text as SVG ``<title>`` elements
and ``title`` attributes, the lens view switch as CSS radio buttons. No script, no font, no URL.
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING

import torch

from .. import _render as svg
from .._render import CSS as CSS
from .._render import esc, show_token, standalone

if TYPE_CHECKING:
    from ..attribution._dla import DLAResult
    from ..lens._result import LensResult
    from ._build import HeadPattern, ReportData

ATTN_COLOUR = "#e07b39"
MLP_COLOUR = "#3b75af"


def _q(tok: str) -> str:
    """A token in quotes with visible whitespace, for prose and hover text."""
    return f"'{show_token(tok)}'"


# ---- logit lens -----------------------------------------------------------------------------------


def lens_section_html(
    lens: LensResult, token_id: int | str | None = None, modes: tuple[str, ...] = ("prob", "rank")
) -> str:
    """The lens heatmap(s): layers (rows) x positions (columns).

    The tracked token is ``token_id`` (else the lens's target) at every position, or, with neither, each
    position's own final prediction. Cells show the lens's top token; colour is the tracked token's
    probability (``prob``) or rank (``rank``, log scale).
    """
    n_layers, n_cols, d_vocab = lens.probs.shape
    if token_id is None and lens.target is not None:
        token_id = lens.target
    if token_id is not None:
        tid = lens._token(token_id)
        tracked = torch.full((n_cols,), tid, dtype=torch.long)
        what = f"the target {_q(_decode(lens, tid))}"
    else:
        tracked = lens.probs[-1].argmax(-1)  # [pos]: the model's own prediction at each position
        what = "each position's final prediction (the token the last layer ranks first there)"
    idx = tracked.view(1, n_cols, 1).expand(n_layers, n_cols, 1)
    p_tracked = lens.probs.gather(-1, idx).squeeze(-1)  # [n_layers, pos]
    rank = (lens.probs > p_tracked.unsqueeze(-1)).sum(-1)  # [n_layers, pos]
    top_p, top_i = lens.top_ids(5)
    tracked_str = [_decode(lens, int(t)) for t in tracked.tolist()]
    cell_text, bold, titles = [], [], []
    for layer in range(n_layers):
        row_text, row_bold, row_titles = [], [], []
        for c in range(n_cols):
            best = _decode(lens, int(top_i[layer, c, 0]))
            row_text.append(show_token(best, 8))
            row_bold.append(int(top_i[layer, c, 0]) == int(tracked[c]))
            tops = ", ".join(
                f"{_q(_decode(lens, int(i)))} {float(p):.3f}"
                for p, i in zip(top_p[layer, c], top_i[layer, c], strict=True)
            )
            row_titles.append(
                f"{_layer_name(lens, layer)}, position {lens.positions[c]} (input {_q(lens.str_tokens[c])})\n"
                f"top 5: {tops}\n"
                f"tracked {_q(tracked_str[c])}: p = {float(p_tracked[layer, c]):.4f}, rank {int(rank[layer, c])}"
            )
        cell_text.append(row_text)
        bold.append(row_bold)
        titles.append(row_titles)
    row_labels = [f"{_layer_name(lens, i, short=True)}" for i in range(n_layers)]
    col_labels = [f"{show_token(t, 12)} ·{p}" for t, p in zip(lens.str_tokens, lens.positions, strict=True)]
    bottom = [show_token(t, 12) for t in tracked_str]
    log_v = math.log10(d_vocab)
    views = {
        "prob": (
            [[svg.sequential(float(p_tracked[i, c])) for c in range(n_cols)] for i in range(n_layers)],
            svg.colorbar(svg.sequential, lo=0, hi=1, label="probability of the tracked token",
                         ticks=[(0, "0"), (0.25, "0.25"), (0.5, "0.5"), (0.75, "0.75"), (1, "1")]),
        ),
        "rank": (
            [[svg.sequential(1 - math.log10(int(rank[i, c]) + 1) / log_v) for c in range(n_cols)] for i in range(n_layers)],
            svg.colorbar(lambda t: svg.sequential(1 - t), lo=0, hi=log_v, label="rank of the tracked token (log scale)",
                         ticks=[(math.log10(r + 1), f"{r:,}") for r in (0, 9, 99, 999, 9999, 99999) if r < d_vocab]),
        ),
    }  # fmt: skip
    parts = [
        f'<p class="how">Each row applies the model\'s own final norm and unembedding to the residual stream after '
        f"that block; each column is an input position (its prediction is of the <em>next</em> token). Cell text: "
        f"the lens's most likely token there (bold when it is the tracked token). Colour: how strongly the lens "
        f"predicts {esc(what)}. Hover a cell for its top 5.</p>"
    ]
    if len(modes) > 1:
        parts.append(
            '<input type="radio" name="lens-mode" id="lens-mode-prob" checked> '
            '<label for="lens-mode-prob">colour by probability</label> '
            '<input type="radio" name="lens-mode" id="lens-mode-rank"> '
            '<label for="lens-mode-rank">colour by rank</label>'
        )
    parts.append('<div class="lens-views">')
    for mode in modes:
        fills, legend = views[mode]
        grid = svg.heatmap(
            fills, row_labels=row_labels, col_labels=col_labels, titles=titles, cell_text=cell_text, bold=bold,
            cell_w=64, cell_h=17, font=10, x_title="input token · position", y_title="layer (residual stream after block)",
            bottom_labels=bottom, bottom_title="tracked token", css_class="heat",
        )  # fmt: skip
        parts.append(f'<div class="lens-{mode}">{legend}<div class="scroll">{grid}</div></div>')
    parts.append("</div>")
    return "".join(parts)


def _layer_name(lens: LensResult, i: int, short: bool = False) -> str:
    name = lens.layer_names[i] if i < len(lens.layer_names) else f"blocks.{i}.resid_post"
    num = name.split(".")[1] if name.startswith("blocks.") else str(i)
    return f"L{num}" if short else f"after block {num}"


def _decode(lens: LensResult, token_id: int) -> str:
    return lens.tokenizer.decode([token_id]) if lens.tokenizer is not None else str(token_id)


# ---- direct logit attribution ---------------------------------------------------------------------


def dla_section_html(dla: DLAResult) -> str:
    """Summary numbers, per-layer bars (attention vs MLP), per-head heatmap and top components."""
    pos_tok = dla.str_tokens[dla.position] if dla.str_tokens else str(dla.position)
    label = f"logit({_q(dla.target_str)})"
    if dla.baseline is not None:
        label += f" − logit({_q(dla.baseline_str or '')})"
    summed = sum(dla.components.values())
    parts = [
        f'<p class="how">How much each component writes, directly, along the unembedding direction of '
        f"{esc(label)} at the last position ({_q(pos_tok)}). The final norm's scale is frozen at its value on "
        f"the full residual stream (s = {dla.scale:.4g}), which makes the contributions add up: "
        f"embedding + Σ attention + Σ MLP + remainder = total. Positive pushes the prediction towards "
        f"the target{' and away from the baseline' if dla.baseline is not None else ''}. Direct effects only: "
        f"what a component does through later layers is not counted here.</p>",
        '<div class="kv">',
        f'<div><span>total ({esc(label)})</span><div class="big">{dla.total:+.3f}</div></div>',
        f'<div><span>sum of components</span><div class="big">{summed:+.3f}</div></div>',
        f'<div><span>remainder (biases, rounding)</span><div class="big">{dla.remainder:+.2g}</div></div>',
        f'<div><span>embedding</span><div class="big">{dla.components.get("embed", 0.0):+.3f}</div></div>',
        f'<div><span>Σ attention / Σ MLP</span><div class="big">'
        f"{sum(v for k, v in dla.components.items() if k.endswith('.attn')):+.2f} / "
        f"{sum(v for k, v in dla.components.items() if k.endswith('.mlp')):+.2f}</div></div>",
        "</div>",
    ]
    per = dla.per_layer()
    n = dla.n_layers
    bars = svg.grouped_bars(
        [str(i) for i in range(n)],
        [("attention", ATTN_COLOUR, per["attn"].tolist()), ("MLP", MLP_COLOUR, per["mlp"].tolist())],
        x_title="layer", y_title="direct contribution (logit units)", height=230,
        bar_w=max(4, min(12, 900 // max(2 * n, 1))),
    )  # fmt: skip
    parts.append("<h3>Per layer: attention vs MLP</h3>")
    parts.append(f'<div class="scroll">{bars}</div>')
    parts.append('<div class="row"><div>')
    parts.append("<h3>Per head (attention output through each head's slice of W<sub>O</sub>)</h3>")
    parts.append(_head_heatmap(dla))
    parts.append("</div><div>")
    parts.append("<h3>Largest components</h3>")
    comps = dla.top_components(10)
    vmax = max((abs(v) for _, v in comps), default=1.0)
    rows = [(name, v, f"{v:+.3f}") for name, v in comps]
    parts.append('<table class="t"><tr><th>component</th><th class="num">contribution</th><th></th></tr>')
    parts.append(_signed_rows(rows, vmax))
    parts.append("</table>")
    parts.append("<h3>Largest heads</h3>")
    heads = dla.top_heads(10)
    hmax = max((abs(v) for *_, v in heads), default=1.0)
    parts.append('<table class="t"><tr><th>head</th><th class="num">contribution</th><th></th></tr>')
    parts.append(_signed_rows([(f"L{layer}H{h}", v, f"{v:+.3f}") for layer, h, v in heads], hmax))
    parts.append("</table></div></div>")
    return "".join(parts)


def _signed_rows(rows: list[tuple[str, float, str]], vmax: float) -> str:
    out = []
    for label, v, text in rows:
        colour = svg.diverging(math.copysign(vmax, v), vmax)
        w = 0 if vmax <= 0 else max(1.0, 150 * abs(v) / vmax)
        out.append(
            f'<tr><td class="tokcell">{esc(label)}</td><td class="num">{esc(text)}</td>'
            f'<td><div class="hbar" style="width:{w:.1f}px;background:{colour}"></div></td></tr>'
        )
    return "".join(out)


def _head_heatmap(dla: DLAResult) -> str:
    heads = dla.heads
    n_layers, n_heads = heads.shape
    vmax = float(heads.abs().max()) or 1.0
    fills = [[svg.diverging(float(heads[i, h]), vmax) for h in range(n_heads)] for i in range(n_layers)]
    text = [
        [
            f"{float(heads[i, h]):.1f}" if abs(float(heads[i, h])) >= 0.15 * vmax else ""
            for h in range(n_heads)
        ]
        for i in range(n_layers)
    ]
    titles = [[f"L{i}H{h}: {float(heads[i, h]):+.4f}" for h in range(n_heads)] for i in range(n_layers)]
    grid = svg.heatmap(
        fills, row_labels=[f"L{i}" for i in range(n_layers)], col_labels=[f"H{h}" for h in range(n_heads)],
        titles=titles, cell_text=text, cell_w=36, cell_h=16, font=10, x_title="head", y_title="layer",
        rotate_cols=False,
    )  # fmt: skip
    legend = svg.colorbar(
        lambda t: svg.diverging(2 * t - 1, 1.0), lo=-vmax, hi=vmax, label="direct contribution (logit units)",
        ticks=[(-vmax, f"{-vmax:.2f}"), (0, "0"), (vmax, f"+{vmax:.2f}")], width=220,
    )  # fmt: skip
    return f"<div>{legend}</div><div>{grid}</div>"


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
    steps = ", ".join(f"{k.split(' (')[0].lower()} {v:.1f}s" for k, v in data.timings.items())
    body.append(
        f"<footer>Made by torch-shard-interpret (tsi report). Timings: {esc(steps)}. Tokens are shown with "
        "␣ for a space and ↵ for a newline. This file is self-contained and works offline.</footer>"
    )
    return standalone(f"tsi report: {data.prompt[:60]}", "".join(body))


def _section(anchor: str, title: str, inner: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{inner}</section>'


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
        f"<th></th></tr>{_signed_rows(rows, vmax)}</table>"
    )
