"""Known circuits: patching and DLA must rank the true components above the decoys (AUROC).

Node scores (``{"a{L}.h{H}": score, "m{L}": score}``) come from activation patching and attribution
patching of ``blocks.*.attn.z`` per head and ``blocks.*.mlp.out`` (all positions), and from DLA of the
clean prompt. DLA sees only direct effects on the logits, so it is scored against the true nodes that
write to the logits themselves (``a0.h0`` for ``prev_token``, ``a1.h0`` for induction).
``node_scores`` is the reusable piece: any method giving ``{node: score}`` is scored by ``tsi.bench.auroc``.
"""

from __future__ import annotations

TOOLS = ("patching.activation", "patching.attribution", "attribution.dla")
THRESHOLD = {"patching.activation": 0.95, "patching.attribution": 0.9, "attribution.dla": 0.9}


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


def checks(quick: bool) -> list[dict]:
    from ._circuits import known_circuit
    from ._metrics import auroc

    rows = []
    for name in ("prev_token", "induction"):
        task = known_circuit(name)
        direct = {"prev_token": {"a0.h0"}, "induction": {"a1.h0"}}[name]
        for tool, method in (("patching.activation", "activation"), ("patching.attribution", "attribution"),
                             ("attribution.dla", "dla")):  # fmt: skip
            scores = node_scores(task, method)
            truth = direct if method == "dla" else task.circuit
            top = sorted(scores, key=lambda k: -abs(scores[k]))[:3]
            rows.append(
                {"tool": tool, "task": f"known circuit: {name}", "metric": "AUROC true vs decoys",
                 "value": auroc(scores, truth), "threshold": THRESHOLD[tool], "higher_is_better": True,
                 "note": f"true {sorted(truth)}; top {top}"}
            )  # fmt: skip
    return rows
