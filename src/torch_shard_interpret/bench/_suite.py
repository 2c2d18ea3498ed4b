"""The list of ground-truth checks and ``run``: import each lazily, run it, collect its rows.

A check is ``checks(quick: bool) -> list[dict]`` (see ``_scoreboard.KEYS``); a module may also say which
tools it scores with ``TOOLS = (...)`` so that ``run(tools=[...])`` skips it without running it. A check
that raises becomes one failing row that names the error, so one broken task never hides the others.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Sequence

from .._progress import progress as _bar
from ..core._errors import InputError
from ._scoreboard import Scoreboard, make_row

CHECKS: tuple[str, ...] = (
    "torch_shard_interpret.bench._check_sae:checks",
    "torch_shard_interpret.bench._check_probe:checks",
    "torch_shard_interpret.bench._check_ig:checks",
    "torch_shard_interpret.bench._check_sanity:checks",
    "torch_shard_interpret.bench._check_circuit:checks",
    "torch_shard_interpret.bench._check_ioi:checks",
    "torch_shard_interpret.bench._check_concept:checks",
    "torch_shard_interpret.bench._check_modular:checks",
    "torch_shard_interpret.bench._trojan:checks",
    "torch_shard_interpret.anomaly._bench:checks",
    "torch_shard_interpret.vision._bench:checks",
    "torch_shard_interpret.circuits._bench:checks",
)
SUITES = ("quick", "full")


def _resolve(path: str):
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    return module, getattr(module, attr or "checks")


def run(
    suite: str = "quick",
    tools: Sequence[str] | None = None,
    *,
    checks: Sequence[str] | None = None,
    progress: bool = True,
) -> Scoreboard:
    """Run every ground-truth check (``suite="quick"``: minutes on 2 CPU cores; ``"full"``: more sizes).

    ``tools``: keep only rows of these tools (e.g. ``["sae.topk", "attribution.ig"]``; a prefix such as
    ``"sae"`` matches ``sae.*``). ``checks``: dotted paths to run instead of ``CHECKS``.
    """
    if suite not in SUITES:
        raise InputError(f"unknown suite {suite!r}; choose 'quick' or 'full'")
    wanted = [t.strip() for t in tools] if tools else None
    board = Scoreboard(suite=suite)
    paths = list(CHECKS if checks is None else checks)
    with _bar(total=len(paths), desc="bench", unit="check", enabled=progress) as bar:
        for path in paths:
            bar.set_postfix_str(path.rsplit(".", 1)[-1])
            start = time.perf_counter()
            try:
                module, fn = _resolve(path)
                declared = getattr(module, "TOOLS", None)
                if (
                    wanted is not None
                    and declared is not None
                    and not any(_match(t, wanted) for t in declared)
                ):
                    bar.update(1)
                    continue
                rows = [make_row(r, path) for r in fn(suite == "quick")]
            except Exception as exc:  # one broken check is a failing row, not a crashed suite
                rows = [
                    make_row(
                        {
                            "tool": path.rsplit(":", 1)[0].rsplit(".", 1)[-1],
                            "task": "error",
                            "metric": "ran",
                            "value": math.nan,
                            "threshold": 1.0,
                            "higher_is_better": True,
                            "note": f"{type(exc).__name__}: {exc}",
                        },
                        path,
                    )  # fmt: skip
                ]
            board.seconds[path] = round(time.perf_counter() - start, 2)
            board.rows.extend(r for r in rows if wanted is None or _match(r["tool"], wanted))
            bar.update(1)
    return board


def _match(tool: str, wanted: Sequence[str]) -> bool:
    return any(tool == w or tool.startswith(w + ".") for w in wanted)
