"""Direct logit attribution as HTML: summary numbers, per-layer bars, the per-head heatmap, top components.

``DLAResult.to_html`` and the report both use ``dla_section_html``; it is built only on the rendering
primitives in ``_render`` (a leaf), so attribution never imports the report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _render as svg
from .._render import esc, quoted

if TYPE_CHECKING:
    from ._dla import DLAResult

ATTN_COLOUR = "#e07b39"
MLP_COLOUR = "#3b75af"


def dla_section_html(dla: DLAResult) -> str:
    """Summary numbers, per-layer bars (attention vs MLP), per-head heatmap and top components."""
    pos_tok = dla.str_tokens[dla.position] if dla.str_tokens else str(dla.position)
    label = f"logit({quoted(dla.target_str)})"
    if dla.baseline is not None:
        label += f" − logit({quoted(dla.baseline_str or '')})"
    read_at = "the final residual stream" if dla.layer is None else f"the residual after block {dla.layer}"
    summed = sum(dla.components.values())
    parts = [
        f'<p class="how">How much each component writes, directly, along the unembedding direction of '
        f"{esc(label)} at position {dla.position} ({esc(quoted(pos_tok))}), read from {read_at}. The final norm's "
        f"scale is frozen at its value on that full residual (s = {dla.scale:.4g}), which makes the contributions add up: "
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
    parts.append(svg.signed_rows(rows, vmax))
    parts.append("</table>")
    parts.append("<h3>Largest heads</h3>")
    heads = dla.top_heads(10)
    hmax = max((abs(v) for *_, v in heads), default=1.0)
    parts.append('<table class="t"><tr><th>head</th><th class="num">contribution</th><th></th></tr>')
    parts.append(svg.signed_rows([(f"L{layer}H{h}", v, f"{v:+.3f}") for layer, h, v in heads], hmax))
    parts.append("</table></div></div>")
    return "".join(parts)


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
