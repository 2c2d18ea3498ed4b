"""Known circuits: patching, DLA and EAP-IG must rank the true components above the decoys (AUROC).

Node scores (``{"a{L}.h{H}": score, "m{L}": score}``) come from activation patching and attribution
patching of ``blocks.*.attn.z`` per head and ``blocks.*.mlp.out`` (all positions), and from DLA of the
clean prompt. DLA sees only direct effects on the logits, so it is scored against ``task.direct``, the true
nodes that write to the logits themselves (``a0.h0`` for ``prev_token``, ``a1.h0`` for induction...).
``node_scores`` is the reusable piece: any method giving ``{node: score}`` is scored by ``tsi.bench.auroc``.

Counting, reversal and sorting also get edge rows (tool ``circuits``): EAP-IG (20 steps) scores every edge
of ``tsi.circuits.graph``; the AUROC ranks ``task.revealed`` (the true edges the corruption reaches) against
every edge outside ``task.edges`` (prev_token's and induction's edge rows are in ``circuits/_bench.py``).
The full suite adds EAP and exact edge patching, and seeds 1 and 2 (other decoys and prompts; the row
keeps the worst seed), and runs the three again with decoys ten times as strong (``decoy_scale=3``: they
move the norms' scale, so patching them moves the metric). Notes give ``min |true| / max |decoy|``, the
margin under an AUROC of 1.0.
"""

from __future__ import annotations

TOOLS = ("patching.activation", "patching.attribution", "attribution.dla", "circuits")
THRESHOLD = {"patching.activation": 0.95, "patching.attribution": 0.9, "attribution.dla": 0.9}
NODE_TOOLS = (("patching.activation", "activation"), ("patching.attribution", "attribution"),
              ("attribution.dla", "dla"))  # fmt: skip
EDGE_METHODS = {"eap-ig": {"steps": 20}, "eap": {}, "patching": {}}
STRONG_DECOYS = 3.0  # ten times the default; at 10 sorting's accuracy falls to 0.99


def node_scores(task, method: str) -> dict[str, float]:
    """``{node: |effect|}`` of one method on a ``KnownCircuit`` (``activation``, ``attribution`` or ``dla``)."""
    import torch_shard_interpret as tsi

    if method == "dla":
        res = tsi.attribution.direct_logit_attribution(task.model, task.clean, task.answer, task.wrong)
        # (wrong=None: the logit itself; the mean logit's direct part is shared by every component)
        scores = {
            f"a{i}.h{h}": float(res.heads[i, h])
            for i in range(res.heads.shape[0])
            for h in range(res.heads.shape[1])
        }
        scores.update({f"m{i}": float(res.components[f"blocks.{i}.mlp"]) for i in range(res.heads.shape[0])})
        return scores
    fn = tsi.patching.activation_patching if method == "activation" else tsi.patching.attribution_patching
    heads = fn(task.model, task.clean, task.corrupt, task.metric, sites="blocks.*.attn.z", heads=True)
    mlps = fn(task.model, task.clean, task.corrupt, task.metric, sites="blocks.*.mlp.out", positions="all")
    scores = {}
    for row, site in enumerate(heads.sites):
        layer = int(site.split(".")[1])
        for h in range(heads.effects.shape[1]):
            scores[f"a{layer}.h{h}"] = float(heads.effects[row, h])
    for row, site in enumerate(mlps.sites):
        scores[f"m{int(site.split('.')[1])}"] = float(mlps.effects[row, 0])
    return scores


def edge_auroc(task, scored) -> tuple[float, float]:
    """``(AUROC, min |revealed| / max |decoy edge|)`` of a ``ScoredGraph`` on a ``KnownCircuit``."""
    from ._metrics import auroc

    values = dict(zip(scored.graph.edges, scored.values.abs().tolist(), strict=True))
    kept = {e: v for e, v in values.items() if e in task.revealed or e not in task.edges}
    return auroc(kept, task.revealed), _margin(kept, task.revealed)


def _margin(scores: dict[str, float], truth: set[str]) -> float:
    true = min(abs(scores[k]) for k in truth)
    decoy = max(abs(v) for k, v in scores.items() if k not in truth)
    return true / decoy if decoy > 0 else float("inf")


def checks(quick: bool) -> list[dict]:
    from ._circuits import ALGORITHMS, NAMES, known_circuit
    from ._metrics import auroc

    rows = []
    variants = [(name, "", 0.3) for name in NAMES + ALGORITHMS]
    if not quick:
        variants += [(name, " (strong decoys)", STRONG_DECOYS) for name in ALGORITHMS]
    for name, label, scale in variants:
        seeds = (0,) if quick or name in NAMES or label else (0, 1, 2)
        tasks = [known_circuit(name, seed, decoy_scale=scale) for seed in seeds]
        for tool, method in NODE_TOOLS:
            results = []
            for task in tasks:
                scores = node_scores(task, method)
                truth = task.direct if method == "dla" else task.circuit
                results.append((auroc(scores, truth), _margin(scores, truth), scores, truth))
            value, margin, scores, truth = min(results, key=lambda r: (r[0], r[1]))
            top = sorted(scores, key=lambda k: -abs(scores[k]))[:3]
            rows.append(
                {"tool": tool, "task": f"known circuit: {name}{label}", "metric": "AUROC true vs decoys",
                 "value": value, "threshold": THRESHOLD[tool], "higher_is_better": True,
                 "note": f"true {sorted(truth)}; top {top}; min|true|/max|decoy| {margin:.3g}"
                         + (f"; worst of seeds {list(seeds)}" if len(seeds) > 1 else "")}
            )  # fmt: skip
        if name in ALGORITHMS:
            rows += _edge_rows(name + label, tasks, seeds, ("eap-ig",) if quick else tuple(EDGE_METHODS))
    return rows


def _edge_rows(name: str, tasks: list, seeds: tuple[int, ...], methods: tuple[str, ...]) -> list[dict]:
    import torch_shard_interpret as tsi

    rows = []
    for method in methods:
        worst = min(
            edge_auroc(t, tsi.circuits.attribute(t.model, t.clean, t.corrupt, t.metric, method=method,
                                                 progress=False, **EDGE_METHODS[method]))
            for t in tasks
        )  # fmt: skip
        rows.append(
            {"tool": "circuits", "task": f"known circuit: {name}", "metric": f"{method} edge AUROC",
             "value": worst[0], "threshold": 0.95, "higher_is_better": True,
             "note": f"true edges the corruption reaches: {sorted(tasks[0].revealed)}; "
                     f"min|true|/max|other| {worst[1]:.3g}"
                     + (f"; worst of seeds {list(seeds)}" if len(seeds) > 1 else "")}
        )  # fmt: skip
    return rows
