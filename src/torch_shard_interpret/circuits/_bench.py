"""Ground-truth check (the ``tsi.bench`` convention): EAP, EAP-IG and exact patching recover a known circuit."""

from __future__ import annotations

import torch

from ._attribute import attribute
from ._toy import auroc, toy_circuit


def checks(quick: bool) -> list[dict]:
    """AUROC of each method's ``|score|`` for the true edges of the hand-built toy circuit (threshold 0.95)."""
    rows = []
    seeds = (0,) if quick else (0, 1, 2)
    for method, kw in (("eap", {}), ("eap-ig", {"steps": 5}), ("patching", {})):
        values = []
        for seed in seeds:
            task = toy_circuit(seed)
            scored = attribute(
                task.model, task.clean, task.corrupt, task.metric, method=method, progress=False, **kw
            )
            truth = torch.tensor([e in task.edges for e in scored.graph.edges])
            values.append(auroc(scored.values, truth))
        rows.append(
            {
                "tool": "circuits",
                "task": "hand-built known path (2-layer GQA LLaMA)",
                "metric": f"{method} edge AUROC",
                "value": sum(values) / len(values),
                "threshold": 0.95,
                "higher_is_better": True,
                "note": f"mean over seeds {list(seeds)}",
            }
        )
    return rows
