"""The standalone HTML page every offline view shares: one stylesheet, no script, no URL."""

from __future__ import annotations

from ._svg import esc

CSS = """
:root { --fg: #1d1d1f; --muted: #5f6368; --line: #dadce0; --card: #fff; --bg: #f4f5f7; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 20px 24px 60px; }
header h1 { font-size: 22px; margin: 0 0 4px; }
header .meta { color: var(--muted); font-size: 13px; }
.prompt { font: 15px/1.5 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; background: #fff;
          border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; margin: 12px 0; white-space: pre-wrap; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px 18px;
          margin: 18px 0; }
section h2 { font-size: 17px; margin: 0 0 2px; }
section h3 { font-size: 14px; margin: 16px 0 4px; }
.how { color: var(--muted); font-size: 13px; margin: 2px 0 12px; max-width: 980px; }
.notes { background: #fff8e1; border: 1px solid #f0d98c; border-radius: 6px; padding: 8px 14px; font-size: 13px; }
.notes li { margin: 2px 0; }
.scroll { overflow-x: auto; padding-bottom: 4px; }
.row { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
.chip { display: inline-block; font: 13px/1.3 ui-monospace, Menlo, Consolas, monospace; padding: 3px 5px; margin: 2px 1px;
        border-radius: 4px; border: 1px solid rgba(0,0,0,.12); white-space: pre; }
.chip sub { color: var(--muted); font-size: 9px; margin-left: 2px; }
table.t { border-collapse: collapse; font-size: 13px; }
table.t th { text-align: left; color: var(--muted); font-weight: 600; padding: 3px 10px 3px 0;
             border-bottom: 1px solid var(--line); }
table.t td { padding: 2px 10px 2px 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.tokcell { font-family: ui-monospace, Menlo, Consolas, monospace; white-space: pre; }
.hbar { height: 11px; border-radius: 2px; }
.big { font-size: 20px; font-weight: 600; }
.kv { display: flex; gap: 28px; flex-wrap: wrap; margin: 6px 0 8px; }
.kv div span { display: block; color: var(--muted); font-size: 12px; }
svg text { font-family: -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #222; }
svg text.tok { font-family: ui-monospace, Menlo, Consolas, monospace; }
svg .axis-title { font-size: 12px; font-weight: 600; fill: #444; }
.head-card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; background: #fcfcfd; }
.head-card h3 { margin: 0 0 2px; }
.head-card .sub { color: var(--muted); font-size: 12px; }
.modes { margin: 4px 0 8px; font-size: 13px; }
.modes label { margin-right: 14px; cursor: pointer; }
#lens-mode-rank:checked ~ .lens-views .lens-prob { display: none; }
#lens-mode-prob:checked ~ .lens-views .lens-rank { display: none; }
table.grid { border-collapse: collapse; font-size: 13px; margin: 6px 0 14px; }
table.grid td, table.grid th { border: 1px solid var(--line); padding: 3px 8px; text-align: right; }
table.grid th { background: #f4f5f7; font-weight: 600; }
table.grid td.label, table.grid th.label { text-align: left; }
.latent h3 { margin: 0 0 4px; }
.ctx { font: 13px/1.5 ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap; margin: 2px 0; }
.ctx .v { display: inline-block; min-width: 4.5em; color: var(--muted); }
.hi { background: #ff9f43; border-radius: 3px; font-weight: 600; }
.up { color: #0a7d32; } .down { color: #b3261e; }
footer { color: var(--muted); font-size: 12px; margin-top: 24px; }
"""


def standalone(title: str, body: str) -> str:
    """A complete HTML document around ``body``."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>\n"
    )
