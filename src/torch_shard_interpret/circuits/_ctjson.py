"""circuit-tracer's graph JSON (schema version 1), the format its frontend and Neuronpedia render.

Top level: ``metadata`` (``slug``, ``scan``, ``transcoder_list``, ``prompt_tokens``, ``prompt``,
``node_threshold``, ``schema_version``), ``qParams`` (``pinnedIds``, ``supernodes``, ``linkType``,
``clickedId``, ``sg_pos``), ``nodes`` and ``links`` (``source``, ``target``, ``weight``). Node ids:
features ``"{layer}_{feature}_{pos}"`` (``feature`` = Cantor pairing of layer and index), errors
``"{layer}_-1_{pos}"``, tokens ``"E_{token}_{pos}"``, logits ``"{n_layers + 1}_{token}_{pos}"``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._graph import CircuitError

NODE_KEYS = (
    "node_id", "feature", "layer", "ctx_idx", "feature_type", "token_prob", "is_target_logit", "run_idx",
    "reverse_ctx_idx", "jsNodeId", "clerp", "influence", "activation",
)  # fmt: skip
METADATA_KEYS = (
    "slug",
    "scan",
    "transcoder_list",
    "prompt_tokens",
    "prompt",
    "node_threshold",
    "schema_version",
)
QPARAMS_KEYS = ("pinnedIds", "supernodes", "linkType", "clickedId", "sg_pos")


def cantor(x: int, y: int) -> int:
    return (x + y) * (x + y + 1) // 2 + y


def _node(node_id: str, feature: int, layer: str, pos: int, kind: str, js: str, **kw: Any) -> dict:
    out = {
        "node_id": node_id, "feature": feature, "layer": layer, "ctx_idx": pos, "feature_type": kind,
        "token_prob": 0.0, "is_target_logit": False, "run_idx": 0, "reverse_ctx_idx": 0, "jsNodeId": js,
        "clerp": "", "influence": None, "activation": None,
    }  # fmt: skip
    out.update(kw)
    return out


def node_list(graph: Any, cumulative: Any) -> list[dict]:
    """Every node of ``graph`` as a circuit-tracer node dict, in adjacency order."""
    s, L = graph.slices(), graph.n_layers
    out = []
    for i, (layer, pos, f) in enumerate(graph.features.tolist()):
        out.append(
            _node(f"{layer}_{f}_{pos}", cantor(layer, f), str(layer), pos, "cross layer transcoder",
                  f"{layer}_{f}-0", influence=float(cumulative[i]), activation=float(graph.activations[i]))
        )  # fmt: skip
    for k in range(L * graph.n_pos):
        layer, pos = divmod(k, graph.n_pos)
        i = s["errors"].start + k
        out.append(
            _node(f"{layer}_-1_{pos}", -1, str(layer), pos, "mlp reconstruction error", f"{layer}_-1-{pos}",
                  influence=float(cumulative[i]))
        )  # fmt: skip
    for pos, tok in enumerate(graph.tokens):
        i = s["tokens"].start + pos
        out.append(
            _node(
                f"E_{tok}_{pos}", pos, "E", pos, "embedding", f"E_{tok}-{pos}", influence=float(cumulative[i])
            )
        )
    last = graph.n_pos - 1
    for k, (tok, p) in enumerate(zip(graph.logit_tokens, graph.logit_probs, strict=True)):
        text = graph.logit_strings[k] if k < len(graph.logit_strings) else str(tok)
        out.append(
            _node(f"{L + 1}_{tok}_{last}", tok, str(L + 1), last, "logit", f"L_{tok}-{last}", token_prob=float(p),
                  is_target_logit=k == 0, clerp=f'Output "{text}" (p={p:.3f})')
        )  # fmt: skip
    return out


def to_json(graph: Any, pruned: Any, node_threshold: float, slug: str) -> dict:
    nodes = node_list(graph, pruned.cumulative)
    keep = pruned.node_mask.tolist()
    dst, src = pruned.edge_mask.nonzero(as_tuple=True)
    links = [
        {"source": nodes[j]["node_id"], "target": nodes[i]["node_id"], "weight": float(graph.adjacency[i, j])}
        for i, j in zip(dst.tolist(), src.tolist(), strict=True)
        if keep[i] and keep[j]
    ]
    linked = {x for link in links for x in (link["source"], link["target"])}
    used = [
        n
        for n, k in zip(nodes, keep, strict=True)
        if k and (n["node_id"] in linked or n["feature_type"] in ("embedding", "logit"))
    ]
    toks = graph.token_strings or [str(t) for t in graph.tokens]
    return {
        "metadata": {
            "slug": slug, "scan": graph.info.get("scan", "tsi"), "transcoder_list": graph.info.get("transcoder_list", []),
            "prompt_tokens": toks, "prompt": graph.prompt, "node_threshold": node_threshold, "schema_version": 1,
        },
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": used,
        "links": links,
    }  # fmt: skip


def load_json(path: str | Path) -> dict:
    """Read a circuit-tracer graph JSON file (ours or one exported by circuit-tracer/Neuronpedia) and check it."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CircuitError(
            f"cannot read graph file {str(path)!r} ({e}); give a circuit-tracer graph JSON"
        ) from None
    missing = [k for k in ("metadata", "nodes", "links") if not isinstance(data, dict) or k not in data]
    if missing:
        raise CircuitError(f"{str(path)!r} is not a circuit-tracer graph: it lacks {', '.join(missing)}")
    ids = {n.get("node_id") for n in data["nodes"]}
    bad = [link for link in data["links"] if link.get("source") not in ids or link.get("target") not in ids]
    if bad:
        raise CircuitError(f"{str(path)!r} has {len(bad)} links to nodes it does not list, e.g. {bad[0]}")
    return data
