"""Ground-truth checks (the ``tsi.bench`` convention): edge scores recover known circuits (AUROC >= 0.95).

Two kinds of model with a known answer:
- the hand-built toy LLaMA (``_toy.py``): fully random clean and corrupt prompts, so every true edge carries
  the difference; EAP, EAP-IG, exact patching and ACDC are scored on all of ``TRUE_EDGES``;
- ``tsi.bench.known_circuit("prev_token" | "induction")``: one earlier token is replaced, so only the true
  edges that carry that token can change the metric (``REVEALED``). The others (the position-only queries
  and keys of the previous-token head, the induction head's query and value, which read tokens the
  corruption left alone) are equal in both runs, and no counterfactual method can see them; they are left
  out of the AUROC (neither true nor decoy). The hand-set attention is sharp (x40), so EAP-IG needs 20 steps.
"""

from __future__ import annotations

from typing import Any

import torch

from ._attribute import attribute
from ._toy import auroc, toy_circuit

# The tools this check scores: tsi.bench.run(tools=[...]) skips it, without running it, when none is asked for.
TOOLS = ("circuits",)

REVEALED = {
    "prev_token": frozenset({"input->a0.h0<v>", "a0.h0->logits"}),
    "induction": frozenset({"input->a0.h0<v>", "a0.h0->a1.h0<k>", "a1.h0->logits"}),
}
METHODS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("eap", {}),
    ("eap-ig", {"steps": 5}),
    ("patching", {}),
    ("acdc", {}),
)  # (method, keywords of attribute)
KNOWN_METHODS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("eap-ig", {"steps": 20}),
    ("patching", {}),
    ("acdc", {}),
)


def known_auroc(task, scored) -> float:
    """AUROC of ``|score|``: the revealed true edges of a ``KnownCircuit`` against every edge outside it."""
    rev = REVEALED[task.name]
    edges = scored.graph.edges
    keep = torch.tensor([e in rev or e not in task.edges for e in edges])
    truth = torch.tensor([e in rev for e in edges])
    return auroc(scored.values[keep], truth[keep])


def checks(quick: bool) -> list[dict]:
    """One row per method and model (threshold 0.95)."""
    from ..bench._circuits import known_circuit

    rows = []
    seeds = (0,) if quick else (0, 1, 2)
    for method, kw in METHODS:
        values = []
        for seed in seeds:
            task = toy_circuit(seed)
            scored = attribute(
                task.model, task.clean, task.corrupt, task.metric, method=method, progress=False, **kw
            )
            truth = torch.tensor([e in task.edges for e in scored.graph.edges])
            values.append(auroc(scored.values, truth))
        rows.append(_row("hand-built known path (2-layer GQA LLaMA)", method, sum(values) / len(values),
                         f"mean over seeds {list(seeds)}"))  # fmt: skip
    for name in ("prev_token", "induction"):
        task = known_circuit(name)
        for method, kw in KNOWN_METHODS:
            scored = attribute(
                task.model, task.clean, task.corrupt, task.metric, method=method, progress=False, **kw
            )
            rows.append(_row(f"known circuit: {name}", method, known_auroc(task, scored),
                             f"true edges the corruption reaches: {sorted(REVEALED[name])}"))  # fmt: skip
    return rows


def _row(task: str, method: str, value: float, note: str) -> dict:
    return {
        "tool": "circuits",
        "task": task,
        "metric": f"{method} edge AUROC",
        "value": value,
        "threshold": 0.95,
        "higher_is_better": True,
        "note": note,
    }
