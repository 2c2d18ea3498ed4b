"""The scoreboard: one row per tool x task x metric, with value, threshold and pass/fail.

A row passes when ``value >= threshold`` (``higher_is_better``) or ``value <= threshold`` (otherwise); a
value that is not a finite number never passes. ``save`` writes JSON, ``load`` reads it back, ``to_html``
draws one bar chart of value/threshold per task and the full table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import atomic_write
from ..core._errors import InputError

KEYS = ("tool", "task", "metric", "value", "threshold", "higher_is_better")


def row_passes(value: float, threshold: float, higher_is_better: bool) -> bool:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value >= threshold if higher_is_better else value <= threshold


def make_row(raw: dict[str, Any], source: str = "") -> dict[str, Any]:
    """Check one row of a check function and add ``passed``; a malformed row is an error naming the check."""
    missing = [k for k in KEYS if k not in raw]
    if missing:
        raise InputError(f"the check {source or '?'} returned a row without {', '.join(missing)}: {raw}")
    row = {k: raw[k] for k in KEYS}
    row["value"] = float(raw["value"])
    row["threshold"] = float(raw["threshold"])
    row["higher_is_better"] = bool(raw["higher_is_better"])
    row["passed"] = row_passes(row["value"], row["threshold"], row["higher_is_better"])
    row["note"] = str(raw.get("note", ""))
    if source:
        row["source"] = source
    return row


@dataclass
class Scoreboard:
    """Rows of ``{tool, task, metric, value, threshold, higher_is_better, passed, note}``."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    suite: str = "quick"
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall-clock seconds per check (dotted path)."""

    @property
    def passed(self) -> bool:
        """True when every row passes."""
        return all(r["passed"] for r in self.rows)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if not r["passed"]]

    def row(self, tool: str, task: str, metric: str) -> dict[str, Any]:
        """The one row of ``tool`` x ``task`` x ``metric``."""
        for r in self.rows:
            if (r["tool"], r["task"], r["metric"]) == (tool, task, metric):
                return r
        raise InputError(f"the scoreboard has no row {tool} / {task} / {metric}")

    def summary(self) -> str:
        """One line per row plus a count: what a terminal shows."""
        lines = []
        for r in self.rows:
            op = ">=" if r["higher_is_better"] else "<="
            mark = "PASS" if r["passed"] else "FAIL"
            lines.append(
                f"{mark}  {r['tool']:<22} {r['task']:<28} {r['metric']:<26} "
                f"{r['value']:.4g} ({op} {r['threshold']:.4g})"
            )
        n_ok = sum(r["passed"] for r in self.rows)
        lines.append(f"{n_ok}/{len(self.rows)} rows pass ({self.suite} suite)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "rows": [dict(r) for r in self.rows], "seconds": dict(self.seconds)}

    def save(self, path: str | Path) -> Path:
        """Write the scoreboard as JSON (atomically); returns the path."""
        return atomic_write(Path(path), json.dumps(self.to_dict(), indent=1, allow_nan=True), mkdir=True)

    @classmethod
    def load(cls, path: str | Path) -> Scoreboard:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(
                f"cannot read a scoreboard from {str(path)!r} ({exc}); give a file that save() wrote"
            ) from None
        rows = [make_row(r, r.get("source", "")) for r in data.get("rows", [])]
        return cls(rows=rows, suite=data.get("suite", "quick"), seconds=data.get("seconds", {}))

    def to_html(self) -> str:
        """A standalone page: per task a bar chart of value and threshold per metric, then the table."""
        from .. import _render as r

        tasks: dict[str, list[dict[str, Any]]] = {}
        for row in self.rows:
            tasks.setdefault(row["task"], []).append(row)
        n_ok = sum(x["passed"] for x in self.rows)
        parts = [
            f"<h1>Ground-truth scoreboard</h1><p>{n_ok} of {len(self.rows)} rows pass "
            f"({r.esc(self.suite)} suite). Each tool is run on a model whose insides are known and scored "
            "against that truth; a row passes when its value is on the right side of its threshold.</p>"
        ]
        for task, rows in tasks.items():
            groups = [f"{x['tool']}: {x['metric']}" for x in rows]
            series = [
                ("value", r.PALETTE[0], [_finite(x["value"]) for x in rows]),
                ("threshold", "#999999", [x["threshold"] for x in rows]),
            ]
            titles = [
                [
                    f"{g}: {x['value']:.4g} ({'pass' if x['passed'] else 'FAIL'})"
                    for g, x in zip(groups, rows, strict=True)
                ],
                [f"{g}: threshold {x['threshold']:.4g}" for g, x in zip(groups, rows, strict=True)],
            ]
            parts.append(f"<h2>{r.esc(task)}</h2>")
            parts.append(
                r.grouped_bars(
                    [str(i + 1) for i in range(len(rows))],
                    series,
                    x_title="row",
                    y_title="value",
                    bar_w=12,
                    titles=titles,
                )  # fmt: skip
            )
            parts.append(_table(rows, r.esc, start=1))
        return r.standalone("tsi bench scoreboard", "".join(parts))

    def _repr_html_(self) -> str:
        return self.to_html()


def _finite(v: float) -> float:
    return v if math.isfinite(v) else 0.0


def _table(rows: list[dict[str, Any]], esc, start: int) -> str:
    head = "<tr><th>#</th><th>tool</th><th>metric</th><th>value</th><th>threshold</th><th></th><th>note</th></tr>"
    body = []
    for i, x in enumerate(rows, start):
        op = "≥" if x["higher_is_better"] else "≤"
        mark = "pass" if x["passed"] else "FAIL"
        body.append(
            f"<tr><td>{i}</td><td>{esc(x['tool'])}</td><td>{esc(x['metric'])}</td><td class='num'>{x['value']:.4g}</td>"
            f"<td class='num'>{op} {x['threshold']:.4g}</td><td>{mark}</td><td>{esc(x.get('note', ''))}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"
