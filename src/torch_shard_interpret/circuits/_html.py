"""The offline circuit view: layers down the page, one node per head and MLP, edge width by |score|."""

from __future__ import annotations

from typing import Any

from .._render import diverging, esc, fmt, standalone

_DX, _DY, _PAD = 44, 56, 30


def _positions(g: Any) -> dict[str, tuple[float, float]]:
    width = (g.n_heads + 1) * _DX
    pos: dict[str, tuple[float, float]] = {"input": (_PAD + width / 2, _PAD)}
    for layer in range(g.n_layers):
        y = _PAD + (2 * layer + 1) * _DY
        for h in range(g.n_heads):
            pos[f"a{layer}.h{h}"] = (_PAD + h * _DX, y)
        pos[f"m{layer}"] = (_PAD + width / 2, y + _DY)
    pos["logits"] = (_PAD + width / 2, _PAD + (2 * g.n_layers + 1) * _DY)
    return pos


def circuit_svg(circuit: Any, max_edges: int = 2000) -> str:
    """An SVG of the circuit's nodes and edges (the ``max_edges`` strongest), computation flowing downwards."""
    g = circuit.graph
    pos = _positions(g)
    idx = circuit.mask.nonzero().flatten().tolist()
    scores = circuit.scores
    val = {e: (0.0 if scores is None else float(scores[e])) for e in idx}
    idx = sorted(idx, key=lambda e: -abs(val[e]))[:max_edges]
    vmax = max((abs(v) for v in val.values()), default=0.0) or 1.0
    lines = []
    for e in reversed(idx):
        s = g.sources[int(g.edge_src[e])]
        dst = g.dests[int(g.edge_dst[e])]
        x1, y1 = pos[s]
        for node in g.dest_nodes(dst)[:1]:
            x2, y2 = pos[node]
            w = 0.5 + 5.5 * abs(val[e]) / vmax
            lines.append(
                f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{diverging(val[e], vmax)}" '
                f'stroke-width="{w:.2f}" stroke-opacity="0.85"><title>{esc(g.edges[e])}: {fmt(val[e])}</title></line>'
            )
    used = set(circuit.nodes)
    dots = []
    for node, (x, y) in pos.items():
        on = node in used
        fill = "#3b3b58" if on else "#e6e6ee"
        shape = (
            f'<rect x="{x - 14:.1f}" y="{y - 9:.1f}" width="28" height="18" rx="3" fill="{fill}"/>'
            if node.startswith("m") or node in ("input", "logits")
            else f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="{fill}"/>'
        )
        label = f'<text x="{x:.1f}" y="{y + 3:.1f}" font-size="7" text-anchor="middle" fill="{"#fff" if on else "#999"}">{esc(node)}</text>'
        dots.append(f"<g><title>{esc(node)}</title>{shape}{label}</g>")
    width = 2 * _PAD + (g.n_heads + 1) * _DX
    height = 2 * _PAD + (2 * g.n_layers + 1) * _DY
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        + "".join(lines)
        + "".join(dots)
        + "</svg>"
    )


def circuit_html(
    circuit: Any, curve: Any = None, title: str = "Circuit", notes: list[str] | None = None
) -> str:
    g = circuit.graph
    head = (
        f"<h1>{esc(title)}</h1><p>{len(circuit)} of {len(g.edges)} edges, {len(circuit.nodes)} nodes"
        f"{esc(f', scored by {circuit.method}') if circuit.method else ''}. Red edges raise the metric when patched "
        "from the counterfactual, blue lower it; width is |score|. Hover an edge or node for its name.</p>"
    )
    extra = "".join(f"<p>{esc(n)}</p>" for n in notes or [])
    side = ""
    if curve is not None:
        side = (
            f"<div><h2>Faithfulness</h2>{curve.chart()}<p>CPR {fmt(curve.cpr)} (higher is better), "
            f"CMD {fmt(curve.cmd)} (0 is best), ablation: {esc(curve.ablation)}</p></div>"
        )
    body = (
        f'{head}{extra}<div style="display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap">'
        f"<div>{circuit_svg(circuit)}</div>{side}</div>"
    )
    return standalone(title, body)
