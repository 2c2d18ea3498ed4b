"""Line charts as inline SVG: curves over a shared x axis (faithfulness curves, training histories)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ._svg import esc, fmt, nice_ticks

PALETTE = ("#3b75af", "#e07b39", "#519e3e", "#c53a32", "#8d69b8", "#84584e", "#d57fbe", "#7f7f7f")


def line_chart(
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    width: int = 420,
    height: int = 240,
    x_title: str = "",
    y_title: str = "",
    log_x: bool = False,
    y_range: tuple[float, float] | None = None,
    hlines: Sequence[tuple[float, str]] = (),
) -> str:
    """One SVG with a polyline per ``(label, xs, ys)``; ``hlines`` are dashed reference lines
    ``(y, label)``, for example a pass threshold. Non-finite points are skipped."""
    pts = [
        (x, y)
        for _, xs, ys in series
        for x, y in zip(xs, ys, strict=False)
        if _ok(x, log_x) and math.isfinite(y)
    ]
    if not pts:
        return f'<svg width="{width}" height="40"><text x="4" y="20">no data</text></svg>'
    tx = (lambda v: math.log10(v)) if log_x else (lambda v: float(v))
    x_lo, x_hi = min(tx(p[0]) for p in pts), max(tx(p[0]) for p in pts)
    if y_range is None:
        ys = [p[1] for p in pts] + [h[0] for h in hlines]
        y_lo, y_hi = min(ys), max(ys)
    else:
        y_lo, y_hi = y_range
    if x_hi == x_lo:
        x_hi = x_lo + 1.0
    if y_hi == y_lo:
        y_hi = y_lo + 1.0
    left, right, top, bottom = 52, 12 + (110 if len(series) > 1 else 0), 10, 40
    pw, ph = width - left - right, height - top - bottom

    def X(v: float) -> float:
        return left + (tx(v) - x_lo) / (x_hi - x_lo) * pw

    def Y(v: float) -> float:
        return top + (1.0 - (v - y_lo) / (y_hi - y_lo)) * ph

    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#ccc"/>')
    for t in nice_ticks(y_lo, y_hi):
        if y_lo <= t <= y_hi:
            out.append(f'<line x1="{left}" x2="{left + pw}" y1="{Y(t):.1f}" y2="{Y(t):.1f}" stroke="#eee"/>')
            out.append(
                f'<text x="{left - 4}" y="{Y(t) + 4:.1f}" font-size="10" text-anchor="end">{fmt(t)}</text>'
            )
    if log_x:
        xt = [10.0**e for e in range(math.floor(x_lo), math.ceil(x_hi) + 1)]
    else:
        xt = nice_ticks(x_lo, x_hi)
    for t in xt:
        if x_lo - 1e-9 <= tx(t) <= x_hi + 1e-9:
            out.append(
                f'<text x="{X(t):.1f}" y="{top + ph + 14}" font-size="10" text-anchor="middle">{fmt(t)}</text>'
            )
    for y, label in hlines:
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{Y(y):.1f}" y2="{Y(y):.1f}" stroke="#888" stroke-dasharray="4 3">'
            f"<title>{esc(label)}</title></line>"
        )
    for i, (label, xs, ys) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        coords = " ".join(
            f"{X(x):.1f},{Y(y):.1f}"
            for x, y in zip(xs, ys, strict=False)
            if _ok(x, log_x) and math.isfinite(y)
        )
        out.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{coords}"><title>{esc(label)}</title></polyline>'
        )
        if len(series) > 1:
            ly = top + 14 * i + 8
            out.append(
                f'<line x1="{left + pw + 8}" x2="{left + pw + 22}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"/>'
            )
            out.append(f'<text x="{left + pw + 26}" y="{ly + 4}" font-size="10">{esc(label[:18])}</text>')
    if x_title:
        out.append(
            f'<text class="axis-title" x="{left + pw / 2:.0f}" y="{height - 6}" text-anchor="middle">{esc(x_title)}</text>'
        )
    if y_title:
        out.append(
            f'<text class="axis-title" transform="translate(12,{top + ph / 2:.0f}) rotate(-90)" text-anchor="middle">{esc(y_title)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _ok(x: float, log_x: bool) -> bool:
    return math.isfinite(x) and (x > 0 or not log_x)
