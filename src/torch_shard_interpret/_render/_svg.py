"""Drawing primitives for the offline HTML report: colour scales, heatmaps, bar charts, coloured tokens.

Pure Python, no dependencies: every function returns a string of inline SVG or HTML. Hover text uses
SVG ``<title>`` elements and HTML ``title`` attributes, so it works without any script or network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

# ---- tokens ---------------------------------------------------------------------------------------


def show_token(tok: str, limit: int | None = None) -> str:
    """A token made visible: spaces as ``␣``, newlines as ``↵``, tabs as ``⇥`` (not yet HTML-escaped)."""
    out = tok.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥").replace("\r", "")
    if out == "":
        out = "∅"
    if limit is not None and len(out) > limit:
        out = out[: limit - 1] + "…"
    return out


def esc(text: object) -> str:
    """``text`` made safe for HTML text and attribute values (the one escaping function of the package)."""
    return escape(str(text), quote=True)


def quoted(tok: str) -> str:
    """A token in quotes with visible whitespace, for prose and hover text (not yet HTML-escaped)."""
    return f"'{show_token(tok)}'"


# ---- colours --------------------------------------------------------------------------------------

# "Purples" (ColorBrewer), 9 stops: white for nothing, dark purple for everything. Black text stays
# readable on the light end, so cells can carry labels; the hue never collides with the blue/red
# diverging scale used for signed quantities.
_SEQ = [
    (252, 251, 253), (239, 237, 245), (218, 218, 235), (188, 189, 220), (158, 154, 200),
    (128, 125, 186), (106, 81, 163), (84, 39, 143), (63, 0, 125),
]  # fmt: skip
_BLUE = (33, 102, 172)
_RED = (178, 24, 43)
_WHITE = (255, 255, 255)


def _lerp(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def sequential(t: float) -> str:
    """Sequential (white to dark purple) colour for ``t`` in [0, 1] (clipped)."""
    if not math.isfinite(t):
        t = 0.0
    t = min(max(t, 0.0), 1.0) * (len(_SEQ) - 1)
    i = min(int(t), len(_SEQ) - 2)
    return _hex(_lerp(_SEQ[i], _SEQ[i + 1], t - i))


def diverging(value: float, vmax: float) -> str:
    """Blue (negative) - white (zero) - red (positive), saturating at ``|value| == vmax``."""
    if vmax <= 0 or not math.isfinite(value):
        return _hex(_WHITE)
    t = min(abs(value) / vmax, 1.0)
    return _hex(_lerp(_WHITE, _RED if value > 0 else _BLUE, t))


def text_on(fill: str) -> str:
    """Black or white text, whichever reads better on ``fill`` (``#rrggbb``)."""
    r, g, b = (int(fill[i : i + 2], 16) for i in (1, 3, 5))
    return "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#fff"


def fmt(x: float, digits: int = 3) -> str:
    """A compact signed-looking number for labels: ``0.123``, ``-1.45``, ``1.2e-05``."""
    if x == 0:
        return "0"
    if abs(x) >= 1000 or abs(x) < 10**-(digits):
        return f"{x:.{max(digits - 1, 1)}e}"
    return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.{digits}g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    start = math.ceil(lo / step) * step
    ticks = []
    v = start
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 10))
        v += step
    return ticks


# ---- text measurement (approximate, for layout) ----------------------------------------------------


def text_width(text: str, size: float) -> float:
    return 0.6 * size * len(text)


# ---- heatmap --------------------------------------------------------------------------------------


def heatmap(
    fills: Sequence[Sequence[str]],
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    titles: Sequence[Sequence[str]] | None = None,
    cell_text: Sequence[Sequence[str]] | None = None,
    bold: Sequence[Sequence[bool]] | None = None,
    cell_w: int = 24,
    cell_h: int = 18,
    x_title: str = "",
    y_title: str = "",
    bottom_labels: Sequence[str] | None = None,
    bottom_title: str = "",
    rotate_cols: bool = True,
    font: int = 11,
    css_class: str = "heat",
) -> str:
    """An SVG grid: ``fills[row][col]`` colours, labels on the left and top (rotated when ``rotate_cols``),
    optional labels under the grid, optional cell text and hover titles."""
    n_rows, n_cols = len(fills), len(fills[0]) if fills else 0
    left = int(max((text_width(s, font) for s in row_labels), default=0)) + 12 + (18 if y_title else 0)
    col_extent = max((text_width(s, font) for s in col_labels), default=0)
    top = (int(col_extent * (0.72 if rotate_cols else 0)) + (18 if not rotate_cols else 14)) + (
        20 if x_title else 0
    )
    bottom_extent = max((text_width(s, font) for s in bottom_labels), default=0) if bottom_labels else 0
    bottom = (int(bottom_extent * 0.72) + 16 + (20 if bottom_title else 0)) if bottom_labels else 6
    width = left + n_cols * cell_w + 40
    height = top + n_rows * cell_h + bottom
    out = [
        f'<svg class="{css_class}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-size="{font}">'
    ]
    if x_title:
        out.append(
            f'<text x="{left + n_cols * cell_w / 2:.1f}" y="14" text-anchor="middle" class="axis-title">'
            f"{esc(x_title)}</text>"
        )
    if y_title:
        cy = top + n_rows * cell_h / 2
        out.append(
            f'<text transform="translate(12,{cy:.1f}) rotate(-90)" text-anchor="middle" class="axis-title">'
            f"{esc(y_title)}</text>"
        )
    for j, lab in enumerate(col_labels):
        x = left + j * cell_w + cell_w / 2
        if rotate_cols:
            out.append(
                f'<text transform="translate({x + 3:.1f},{top - 5}) rotate(-45)" class="tok">{esc(lab)}</text>'
            )
        else:
            out.append(f'<text x="{x:.1f}" y="{top - 5}" text-anchor="middle" class="tok">{esc(lab)}</text>')
    for i, lab in enumerate(row_labels):
        y = top + i * cell_h + cell_h / 2 + font * 0.35
        out.append(f'<text x="{left - 6}" y="{y:.1f}" text-anchor="end" class="tok">{esc(lab)}</text>')
    for i in range(n_rows):
        for j in range(n_cols):
            x, y = left + j * cell_w, top + i * cell_h
            fill = fills[i][j]
            title = f"<title>{esc(titles[i][j])}</title>" if titles is not None else ""
            out.append(f'<g><rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="{fill}"/>{title}')
            if cell_text is not None and cell_text[i][j]:
                weight = ' font-weight="bold"' if bold is not None and bold[i][j] else ""
                out.append(
                    f'<text x="{x + cell_w / 2:.1f}" y="{y + cell_h / 2 + font * 0.32:.1f}" text-anchor="middle" '
                    f'style="fill:{text_on(fill)}" font-size="{font - 1}"{weight} pointer-events="none">'
                    f"{esc(cell_text[i][j])}</text>"
                )
            out.append("</g>")
    out.append(
        f'<rect x="{left}" y="{top}" width="{n_cols * cell_w}" height="{n_rows * cell_h}" fill="none" '
        'stroke="#999" stroke-width="0.5"/>'
    )
    if bottom_labels:
        yb = top + n_rows * cell_h + 6
        for j, lab in enumerate(bottom_labels):
            x = left + j * cell_w + cell_w / 2
            out.append(
                f'<text transform="translate({x - 3:.1f},{yb}) rotate(45)" class="tok">{esc(lab)}</text>'
            )
        if bottom_title:
            out.append(
                f'<text x="{left + n_cols * cell_w / 2:.1f}" y="{height - 4}" text-anchor="middle" '
                f'class="axis-title">{esc(bottom_title)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def colorbar(
    color: Callable[[float], str],
    *,
    lo: float,
    hi: float,
    label: str,
    ticks: Sequence[tuple[float, str]],
    width: int = 240,
) -> str:
    """A horizontal legend: ``color(t)`` for t in [0, 1] mapped to [lo, hi], with labelled ticks."""
    steps = 48
    h = 46
    x0 = 24  # room for the first tick label
    out = [f'<svg class="legend" width="{width + 2 * x0}" height="{h}" font-size="10">']
    out.append(f'<text x="{x0}" y="11" class="axis-title">{esc(label)}</text>')
    for k in range(steps):
        t = k / (steps - 1)
        out.append(
            f'<rect x="{x0 + k * width / steps:.2f}" y="16" width="{width / steps + 0.6:.2f}" height="10" '
            f'fill="{color(t)}"/>'
        )
    out.append(
        f'<rect x="{x0}" y="16" width="{width}" height="10" fill="none" stroke="#999" stroke-width="0.5"/>'
    )
    for value, text in ticks:
        t = 0.0 if hi == lo else (value - lo) / (hi - lo)
        x = x0 + t * width
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="26" y2="30" stroke="#555"/>')
        out.append(f'<text x="{x:.1f}" y="41" text-anchor="middle">{esc(text)}</text>')
    out.append("</svg>")
    return "".join(out)


# ---- bar charts -----------------------------------------------------------------------------------


def grouped_bars(
    groups: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float]]],
    *,
    x_title: str,
    y_title: str,
    height: int = 260,
    bar_w: int = 9,
    group_gap: int = 6,
    titles: Sequence[Sequence[str]] | None = None,
) -> str:
    """Vertical grouped bars around a zero line. ``series``: (name, colour, values per group)."""
    values = [v for _, _, vals in series for v in vals] or [0.0]
    lo, hi = min(0.0, min(values)), max(0.0, max(values))
    if hi == lo:
        hi = lo + 1.0
    pad = 0.06 * (hi - lo)
    lo, hi = (lo - pad if lo < 0 else lo), hi + pad
    ticks = nice_ticks(lo, hi, 5)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    left, top, bottom = 64, 34, 52
    group_w = len(series) * bar_w + group_gap
    plot_w = len(groups) * group_w
    width = left + plot_w + 20
    total_h = top + height + bottom

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * height

    out = [
        f'<svg class="bars" width="{width}" height="{total_h}" '
        f'viewBox="0 0 {width} {total_h}" font-size="10">'
    ]
    for t in ticks:
        yy = y(t)
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{left - 5}" y="{yy + 3:.1f}" text-anchor="end">{esc(fmt(t, 3))}</text>')
    for gi, _ in enumerate(groups):
        if gi % 2 == 1:
            out.append(
                f'<rect x="{left + gi * group_w}" y="{top}" width="{group_w}" height="{height}" fill="#f6f6f6"/>'
            )
    for si, (name, colour, vals) in enumerate(series):
        for gi, v in enumerate(vals):
            x = left + gi * group_w + group_gap / 2 + si * bar_w
            y0, y1 = y(max(v, 0.0)), y(min(v, 0.0))
            tip = titles[si][gi] if titles is not None else f"{groups[gi]} {name}: {fmt(v, 4)}"
            out.append(
                f'<rect x="{x:.1f}" y="{y0:.1f}" width="{bar_w - 1}" height="{max(y1 - y0, 0.5):.1f}" '
                f'fill="{colour}"><title>{esc(tip)}</title></rect>'
            )
    out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#333"/>')
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + height}" stroke="#333"/>')
    every = max(1, math.ceil(len(groups) / 40))
    for gi, g in enumerate(groups):
        if gi % every == 0 or gi == len(groups) - 1:
            x = left + gi * group_w + group_w / 2
            out.append(f'<text x="{x:.1f}" y="{top + height + 13}" text-anchor="middle">{esc(g)}</text>')
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{total_h - 8}" text-anchor="middle" class="axis-title">'
        f"{esc(x_title)}</text>"
    )
    out.append(
        f'<text transform="translate(14,{top + height / 2:.1f}) rotate(-90)" text-anchor="middle" '
        f'class="axis-title">{esc(y_title)}</text>'
    )
    lx = left
    for name, colour, _ in series:
        out.append(f'<rect x="{lx}" y="10" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{lx + 16}" y="20">{esc(name)}</text>')
        lx += 28 + int(text_width(name, 10))
    out.append("</svg>")
    return "".join(out)


def hbar_rows(
    rows: Sequence[tuple[str, float, str]], *, vmax: float, colour: str = "#3168b0", width: int = 160
) -> str:
    """HTML table rows with horizontal bars: (label, value, value text)."""
    out = []
    for label, value, text in rows:
        w = 0 if vmax <= 0 else max(1.0, width * min(abs(value) / vmax, 1.0))
        out.append(
            f'<tr><td class="tokcell">{esc(label)}</td><td class="num">{esc(text)}</td>'
            f'<td><div class="hbar" style="width:{w:.1f}px;background:{colour}"></div></td></tr>'
        )
    return "".join(out)


def key_values(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column HTML table of ``(name, value text)`` rows, both escaped."""
    body = "".join(f'<tr><td>{esc(k)}</td><td class="num">{esc(v)}</td></tr>' for k, v in rows)
    return f'<table class="t">{body}</table>'


def signed_rows(rows: Sequence[tuple[str, float, str]], vmax: float, width: int = 150) -> str:
    """HTML table rows ``(label, value, value text)`` with a bar coloured by the value's sign."""
    out = []
    for label, value, text in rows:
        colour = diverging(math.copysign(vmax, value), vmax)
        w = 0 if vmax <= 0 else max(1.0, width * abs(value) / vmax)
        out.append(
            f'<tr><td class="tokcell">{esc(label)}</td><td class="num">{esc(text)}</td>'
            f'<td><div class="hbar" style="width:{w:.1f}px;background:{colour}"></div></td></tr>'
        )
    return "".join(out)


# ---- coloured tokens ------------------------------------------------------------------------------


def colored_tokens(
    tokens: Sequence[str], values: Sequence[float], *, vmax: float, titles: Sequence[str]
) -> str:
    """Tokens as inline chips coloured on the diverging scale."""
    return _chips(tokens, [diverging(v, vmax) for v in values], titles)


def sequential_tokens(
    tokens: Sequence[str], values: Sequence[float], *, vmax: float, titles: Sequence[str]
) -> str:
    """Tokens as inline chips coloured on the sequential scale (0 .. vmax)."""
    return _chips(tokens, [sequential(0.0 if vmax <= 0 else v / vmax) for v in values], titles)


def _chips(tokens: Sequence[str], fills: Sequence[str], titles: Sequence[str]) -> str:
    return "".join(
        f'<span class="chip" style="background:{fill};color:{text_on(fill)}" title="{esc(title)}">'
        f"{esc(show_token(tok))}</span>"
        for tok, fill, title in zip(tokens, fills, titles, strict=True)
    )
