"""The Circuits tab: circuit discovery on one clean/corrupt prompt pair, the circuit's SVG and its faithfulness.

``POST /api/circuits`` (or a job of kind ``circuits``) scores every edge of ``tsi.circuits.graph(model)`` with
``tsi.circuits.attribute``, keeps the top edges (or ACDC's circuit), and measures
``tsi.circuits.faithfulness`` of that circuit with the metric ``logit(target) - logit(baseline)`` at the last
position, plus (unless ``curve`` is false) the faithfulness curve over MIB's edge fractions. The numbers are
those of the Python API called with the same arguments; the SVG is the one ``tsi circuit`` writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from . import _specs as S
from ._compute import logit_label
from ._specs import RequestError

if TYPE_CHECKING:
    from ..core._model import Model

Progress = Callable[[float, str], None]
METHODS = ("eap-ig", "eap", "patching", "acdc")
MAX_STEPS = 50
MAX_TOP_EDGES = 30  # edges listed in the response (the SVG draws the whole circuit)
CURVE_FORWARDS = 21  # the curve's masks: 10 fractions x (signed, |score|) + the empty circuit


def _noop(_: float, __: str) -> None:
    pass


def _top(body: Mapping[str, Any]) -> tuple[int | None, float | None]:
    """``top``: a fraction of the edges in (0, 1) or an edge count >= 1, as ``(n, frac)``."""
    value = body.get("top", 0.05)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value > 1e9:
        raise RequestError(
            f"'top' must be a fraction of the edges such as 0.05 or an edge count such as 40, not {value!r}"
        )
    return (int(value), None) if value >= 1 else (None, float(value))


def _flag(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise RequestError(f"{key!r} must be true or false, not {value!r}")
    return value


def _method(body: Mapping[str, Any]) -> str:
    method = body.get("method", "eap-ig")
    if method not in METHODS:
        raise RequestError(f"'method' must be one of {', '.join(METHODS)}, not {method!r}")
    return method


def forwards(model: Model, body: Mapping[str, Any]) -> int:
    """About how many forward passes a request runs (``patching`` and ``acdc``: one per edge at most)."""
    method = body.get("method", "eap-ig")
    steps = body.get("steps", 5)
    steps = steps if isinstance(steps, int) and not isinstance(steps, bool) and 0 < steps <= MAX_STEPS else 1
    if method in ("patching", "acdc"):
        from ..circuits import graph

        base = len(graph(model).edges)
    else:
        base = 2 + (steps if method == "eap-ig" else 1)
    return base + 3 + (CURVE_FORWARDS if body.get("curve", True) is not False else 0)


def check_cost(state: Any, body: Mapping[str, Any]) -> None:
    """Refuse (400) a request costing more than the server's cap: forwards x tokens."""
    value = body.get("clean")
    if not isinstance(value, str) or not value.strip() or len(value) > S.MAX_PROMPT_CHARS:
        return  # the endpoint itself names what is wrong with the field
    n = int(state.model.to_tokens(value).shape[-1])
    runs = forwards(state.model, body)
    cost = runs * n
    if cost > state.max_cost:
        raise RequestError(
            f"this circuits request costs {cost:,} (about {runs} forwards x {n} tokens); the cap is "
            f"{state.max_cost:,}: use method 'eap' or 'eap-ig', fewer steps, curve false, a shorter prompt, "
            "or start the server with a larger --max-cost"
        )


def circuits(state: Any, body: Mapping[str, Any], progress: Progress = _noop) -> dict[str, Any]:
    """Score edges, keep a circuit, measure its faithfulness: the JSON behind the Circuits tab."""
    import torch_shard_interpret as tsi

    from ..circuits._html import circuit_svg
    from ..lens._logit import as_token_id

    m = state.model
    clean, corrupt = S.text(body, "clean"), S.text(body, "corrupt")
    method = _method(body)
    steps = S.integer(body, "steps", 5, 1, MAX_STEPS)
    n, frac = _top(body)
    tau = body.get("tau")
    tau = None if tau is None else S.number(body, "tau", 0.0)
    if tau is not None and tau < 0:
        raise RequestError(f"'tau' must be a non-negative threshold, not {tau}")
    with_curve, mib = _flag(body, "curve", True), _flag(body, "mib", False)
    target = S.text(body, "target", required=False) or None
    baseline = S.text(body, "baseline", required=False) or None
    target_id = int(m.run(clean).logits[0, -1].argmax()) if target is None else as_token_id(m, target)
    baseline_id = as_token_id(m, baseline, "baseline")

    def metric(logits: torch.Tensor) -> torch.Tensor:  # [batch, pos, d_vocab] -> [batch]
        out = logits[:, -1, target_id]
        return out - logits[:, -1, baseline_id] if baseline_id is not None else out

    progress(0.05, f"scoring every edge ({method})")
    scored = tsi.circuits.attribute(
        m, clean, corrupt, metric, method=method, steps=steps, tau=tau, progress=False
    )
    if isinstance(scored, tsi.circuits.AcdcResult):
        circuit = scored.circuit
    else:
        circuit = scored.top(n=n) if n is not None else scored.top(frac=frac)
    progress(0.6, "faithfulness of the circuit")
    f = tsi.circuits.faithfulness(m, circuit, clean, corrupt, metric)
    curve = None
    if with_curve:
        progress(0.75, "faithfulness curve")
        curve = tsi.circuits.faithfulness_curve(m, scored, clean, corrupt, metric)
    values = scored.values
    ranked = sorted(circuit.edges, key=lambda e: -abs(float(values[scored.graph.index[e]])))[:MAX_TOP_EDGES]
    shown = repr(target) if target is not None else logit_label(m, target_id)
    metric_name = f"logit({shown})" + ("" if baseline is None else f" - logit({baseline!r})")
    return {
        "clean": clean,
        "corrupt": corrupt,
        "method": scored.method,
        "metric": metric_name,
        "edges": len(circuit),
        "total_edges": len(scored.graph.edges),
        "nodes": circuit.nodes,
        "faithfulness": round(float(f), 6),
        "faithfulness_detail": f.to_dict(),
        "top_edges": [[e, round(float(values[scored.graph.index[e]]), 6)] for e in ranked],
        "svg": circuit_svg(circuit),
        "curve": None if curve is None else {**curve.to_dict(), "chart": curve.chart()},
        "circuit_edges": circuit.edges,
        "circuit": circuit.to_dict() if mib else None,  # MIB circuit JSON (every edge of the graph: opt-in)
        "info": {k: v for k, v in scored.info.items() if isinstance(v, (int, float, str))},
    }


KINDS = {"circuits": circuits}
