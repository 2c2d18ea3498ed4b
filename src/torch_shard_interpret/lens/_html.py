"""The logit lens as HTML: the layers x positions heatmap that ``LensResult.to_html`` and the report show.

Built only on the rendering primitives in ``_render`` (a leaf), so the lens never imports the report.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .. import _render as svg
from .._render import esc, quoted, show_token
from ..core._tokens import str_tokens

if TYPE_CHECKING:
    from ._result import LensResult


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
        what = f"the target {quoted(_decode(lens, tid))}"
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
                f"{quoted(_decode(lens, int(i)))} {float(p):.3f}"
                for p, i in zip(top_p[layer, c], top_i[layer, c], strict=True)
            )
            row_titles.append(
                f"{_layer_name(lens, layer)}, position {lens.positions[c]} (input {quoted(lens.str_tokens[c])})\n"
                f"top 5: {tops}\n"
                f"tracked {quoted(tracked_str[c])}: p = {float(p_tracked[layer, c]):.4f}, rank {int(rank[layer, c])}"
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
    if name.endswith(".resid_pre") and name.startswith("blocks.0."):
        return "emb" if short else "embeddings (before block 0)"
    num = name.split(".")[1] if name.startswith("blocks.") else str(i)
    return f"L{num}" if short else f"after block {num}"


def _decode(lens: LensResult, token_id: int) -> str:
    return str_tokens(lens.tokenizer, [token_id])[0]
