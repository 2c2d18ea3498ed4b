"""``tsi anomaly fit`` / ``tsi anomaly score``: fit a detector on trusted texts, score (or evaluate) others."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._common import DEFAULT_MODEL, add_model, add_progress, api_default, progress_for
from ._output import add_output, output_dir, output_file

HELP = "fit an anomaly detector on trusted texts, then score new texts (higher = more anomalous)"


def register(subparsers: Any) -> None:
    from ..anomaly import fit as fit_detector

    parser = subparsers.add_parser("anomaly", help=HELP, description=HELP + ".")
    sub = parser.add_subparsers(dest="anomaly_command", metavar="ACTION", parser_class=type(parser))
    fit = sub.add_parser("fit", help="fit a detector on trusted texts and save it into --out")
    add_model(fit)
    fit.add_argument(
        "--data", required=True, metavar="FILE", help="trusted texts: .txt (one per line) or .jsonl ('text')"
    )
    fit.add_argument(
        "--sites", default=api_default(fit_detector, "sites"), help="site names or globs, comma-separated"
    )
    fit.add_argument("--detector", default=api_default(fit_detector, "detector"),
                     help="mahalanobis, spectral, que, sae, probe (needs --anomalous) or abstraction")  # fmt: skip
    fit.add_argument(
        "--reduce",
        choices=("mean", "last"),
        default=api_default(fit_detector, "reduce"),
        help="how a text becomes one vector",
    )
    fit.add_argument("--anomalous", metavar="FILE", help="labelled anomalies (the probe detector)")
    add_output(
        fit, "--out", required=True, metavar="DIR", help="folder for detector.json + detector.safetensors"
    )
    add_progress(fit)
    fit.set_defaults(run=run_fit)
    score = sub.add_parser("score", help="score texts with a saved detector (or AUROC/AP with --anomalous)")
    score.add_argument("detector_dir", metavar="DIR", help="a folder written by `tsi anomaly fit`")
    score.add_argument("--data", required=True, metavar="FILE", help="texts to score (.txt or .jsonl)")
    score.add_argument(
        "--anomalous", metavar="FILE", help="known anomalies: print AUROC/AP of --data vs these"
    )
    score.add_argument("--model", help="model name (default: the one the detector was fitted on)")
    add_output(
        score, "--json", kind="file", metavar="PATH", help="also write the scores as JSON (atomically)"
    )
    score.set_defaults(run=run_score)
    parser.set_defaults(run=lambda args: parser.print_help() or 0)


def read_texts(path: str) -> list[str]:
    """Texts from a .txt (one per non-empty line), .jsonl (field ``text``) or .parquet (column ``text``) file."""
    from ..core import InputError
    from ..store._data import _read_jsonl, _read_parquet, _read_txt

    p = Path(path)
    readers = {".txt": _read_txt, ".jsonl": _read_jsonl, ".parquet": _read_parquet}
    if p.suffix.lower() not in readers or not p.is_file():
        raise InputError(
            f"no data file at {path!r}; give a .txt file (one text per line) or .jsonl with 'text'"
        )
    texts = list(readers[p.suffix.lower()](p))
    if not texts:
        raise InputError(f"{path} holds no text; write one text per line")
    return texts


def run_fit(args: argparse.Namespace) -> int:
    from ..anomaly import fit
    from ._common import load_model

    out = output_dir(args, "out")
    texts = read_texts(args.data)
    anomalous = read_texts(args.anomalous) if args.anomalous else None
    model = load_model(args.model)
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    det = fit(model, texts, sites=sites, detector=args.detector, anomalous_data=anomalous, reduce=args.reduce,
              progress=progress_for(args))  # fmt: skip
    det.meta.update(model=args.model, n_trusted=len(texts))
    with out.writing() as folder:
        det.save(folder)
    print(f"fitted {args.detector} on {len(texts)} texts at {len(det.sites)} sites; wrote {out.path}")
    return 0


def run_score(args: argparse.Namespace) -> int:
    from .._io import atomic_write
    from ..anomaly import evaluate, load
    from ._common import load_model

    json_path = output_file(args, "json", suggestion="scores.json")
    det = load(args.detector_dir)
    det.bind(load_model(args.model or det.meta.get("model") or DEFAULT_MODEL))
    texts = read_texts(args.data)
    payload: dict[str, Any]
    if args.anomalous:
        res = evaluate(det, texts, read_texts(args.anomalous))
        print(
            f"{det.kind}: AUROC {res.auroc:.3f}  AP {res.ap:.3f}  ({len(texts)} normal vs {len(res.labels) - len(texts)} anomalous)"
        )
        payload = res.to_dict()
    else:
        scores = det.score(texts).tolist()
        for s, t in sorted(zip(scores, texts, strict=True), reverse=True):
            print(f"{s:10.3f}  {t[:90]}")
        payload = {"detector": det.kind, "scores": scores, "texts": texts}
    if json_path is not None:
        atomic_write(json_path, json.dumps(payload, indent=1))
        print(f"wrote {json_path}")
    return 0
