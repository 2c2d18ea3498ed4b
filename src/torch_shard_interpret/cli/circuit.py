"""``tsi circuit --clean "..." --corrupt "..." --target " Mary" --baseline " John"``: find a circuit and write
``DIR/circuit.json`` (MIB circuit JSON), ``DIR/scores.json`` (every edge's score) and ``DIR/circuit.html``.
``--method acdc`` keeps ACDC's circuit (threshold ``--tau``) instead of the top edges; ``--transcoders DIR`` also
writes ``DIR/graph.json``, the attribution graph of the first clean prompt in circuit-tracer's graph JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .._io import atomic_write
from ._bounds import int_in
from ._common import add_model, add_progress, api_default, load_model, progress_for
from ._output import add_output, output_dir

HELP = "find a circuit (EAP, EAP-IG, exact edge patching or ACDC) and write MIB circuit JSON and an HTML view"


def register(subparsers: Any) -> None:
    from ..circuits import attribute

    p = subparsers.add_parser("circuit", help=HELP, description=HELP + ".")
    p.add_argument(
        "--clean", action="append", required=True, metavar="TEXT", help="clean prompt (repeatable)"
    )
    p.add_argument(
        "--corrupt",
        action="append",
        required=True,
        metavar="TEXT",
        help="counterfactual prompt, one per --clean",
    )
    p.add_argument(
        "--target", required=True, metavar="TOKEN", help="the clean answer, one token, e.g. ' Mary'"
    )
    p.add_argument(
        "--baseline", required=True, metavar="TOKEN", help="the counterfactual answer, e.g. ' John'"
    )
    add_model(p)
    p.add_argument("--method", choices=("eap-ig", "eap", "patching", "acdc"), default=api_default(attribute, "method"),
                   help="default %(default)s")  # fmt: skip
    p.add_argument(
        "--tau",
        type=float,
        default=None,
        help="acdc threshold in logit-difference units (default: 1%% of clean minus corrupt)",
    )
    p.add_argument(
        "--transcoders",
        metavar="DIR",
        default=None,
        help="per-layer transcoders (circuit-tracer config.yaml/safetensors or SAE folders): also write graph.json, "
        "the first clean prompt's attribution graph in circuit-tracer JSON",
    )
    p.add_argument("--steps", type=int_in(1, 1000), default=api_default(attribute, "steps"),
                   help="eap-ig interpolation steps (default %(default)s; 1-1000)")  # fmt: skip
    p.add_argument(
        "--top", type=float, default=0.01, help="fraction of edges kept (default 0.01); >= 1: an edge count"
    )
    p.add_argument(
        "--no-curve", action="store_true", help="skip the faithfulness curve (10 fractions, batched)"
    )
    add_output(p, "--out", required=True, metavar="DIR", help="output directory (must be empty or new)")
    add_progress(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..core import InputError

    out = output_dir(args, "out")
    if len(args.clean) != len(args.corrupt):
        raise InputError(
            f"got {len(args.clean)} --clean and {len(args.corrupt)} --corrupt prompts; give one of each per pair"
        )
    if args.tau is not None and args.tau < 0:
        raise InputError(f"--tau must be a non-negative threshold, not {args.tau}")
    if args.transcoders is not None and not Path(args.transcoders).exists():
        raise InputError(
            f"--transcoders {args.transcoders!r} does not exist; give a folder of transcoder files"
        )
    if args.top <= 0:
        raise InputError(f"--top must be a positive fraction (0.01) or edge count (200), not {args.top}")
    model = load_model(args.model)
    right, wrong = model.token_id(args.target), model.token_id(args.baseline)

    import torch_shard_interpret as tsi

    def metric(logits):
        return logits[:, -1, right] - logits[:, -1, wrong]

    scored = tsi.circuits.attribute(
        model, args.clean, args.corrupt, metric, method=args.method, steps=args.steps, tau=args.tau,
        progress=progress_for(args),
    )  # fmt: skip
    if isinstance(scored, tsi.circuits.AcdcResult):
        circuit = scored.circuit
    else:
        circuit = scored.top(n=int(args.top)) if args.top >= 1 else scored.top(frac=args.top)
    graph = None
    if args.transcoders is not None:
        graph = tsi.circuits.attribution_graph(model, args.clean[0], transcoders=args.transcoders)
    f = tsi.circuits.faithfulness(model, circuit, args.clean, args.corrupt, metric)
    curve = (
        None
        if args.no_curve
        else tsi.circuits.faithfulness_curve(model, scored, args.clean, args.corrupt, metric)
    )
    notes = [
        f"metric: logit({args.target!r}) - logit({args.baseline!r}) at the last token; {len(args.clean)} prompt pair(s)",
        f"faithfulness of this circuit: {float(f):.3f} (ablation: {f.ablation}; m(M)={f.full_metric:.3f}, "
        f"m(empty)={f.empty_metric:.3f})",
    ]
    with out.writing() as folder:
        _write(folder, circuit, scored, curve, f, notes, graph)
    print(
        f"{len(circuit)} of {len(scored.graph.edges)} edges, {len(circuit.nodes)} nodes; faithfulness {float(f):.3f}"
    )
    if curve is not None:
        print(f"CPR {curve.cpr:.3f}  CMD {curve.cmd:.3f}")
    extra = ", graph.json" if graph is not None else ""
    print(f"wrote {(out.path / 'circuit.json').resolve()} and circuit.html, scores.json, summary.json{extra}")
    return 0


def _write(out: Path, circuit: Any, scored: Any, curve: Any, f: Any, notes: list[str], graph: Any) -> None:
    circuit.save(out / "circuit.json")
    scored.save(out / "scores.json")
    summary = {
        "faithfulness": f.to_dict(),
        "edges": len(circuit),
        "method": scored.method,
        "info": _plain(scored.info),
    }
    if curve is not None:
        summary["curve"] = curve.to_dict()
    atomic_write(out / "summary.json", json.dumps(summary, indent=1))
    if graph is not None:
        graph.save(out / "graph.json", slug="tsi-circuit")
        replacement, completeness = graph.scores()
        summary["attribution_graph"] = {"replacement": replacement, "completeness": completeness,
                                        "features": graph.n_features}  # fmt: skip
        atomic_write(out / "summary.json", json.dumps(summary, indent=1))
        notes.append(f"attribution graph: replacement {replacement:.3f}, completeness {completeness:.3f}")
    html = circuit.to_html(curve=curve, title=f"Circuit ({scored.method})", notes=notes)
    atomic_write(out / "circuit.html", html)


def _plain(info: dict) -> dict:
    return {k: v for k, v in info.items() if isinstance(v, (int, float, str))}
