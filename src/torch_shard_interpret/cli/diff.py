"""``tsi diff MODEL_A MODEL_B --data FILE --out DIR``: per-site divergence, logit-lens KL, and a crosscoder whose
B-only / A-only latents the HTML report shows with their top-activating examples."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import add_progress, api_default, progress_for
from ._output import add_output, output_dir

HELP = "compare two models of one architecture on texts: divergence per site, logit lens, crosscoder latents"


def register(subparsers: Any) -> None:
    from ..diff import compare, train_crosscoder

    parser = subparsers.add_parser("diff", help=HELP, description=HELP + ". A name ending in ':int8' or ':int4' "
                                   "is that model with its weights rounded locally (e.g. smollm2-135m:int8).")  # fmt: skip
    parser.add_argument("model_a", metavar="MODEL_A")
    parser.add_argument("model_b", metavar="MODEL_B")
    parser.add_argument(
        "--data", required=True, metavar="FILE", help=".txt (one text per line) or .jsonl ('text')"
    )
    add_output(parser, "--out", metavar="DIR", help="write report.html, diff.json and crosscoder/ here")
    parser.add_argument(
        "--sites", default=api_default(compare, "sites"), help="sites to compare (globs, comma-separated)"
    )
    parser.add_argument("--site", help="crosscoder site (default: the middle block's resid_post)")
    parser.add_argument(
        "--d-latent", type=int, help="crosscoder width (default: that of tsi.diff.train_crosscoder)"
    )
    parser.add_argument("--k", type=int, default=api_default(train_crosscoder, "k"),
                        help="BatchTopK: active latents per row on average (default %(default)s)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=api_default(train_crosscoder, "steps"),
                        help="crosscoder training steps (default %(default)s; 0 skips it)")  # fmt: skip
    add_progress(parser)
    parser.set_defaults(run=run)


def load_variant(name: str) -> Any:
    """``load_model(name)``; ``NAME:int8`` / ``NAME:int4``: a locally quantised copy of ``NAME``."""
    from ..diff import quantized_copy
    from ._common import load_model

    base, _, suffix = name.rpartition(":")
    if base and suffix in ("int8", "int4"):
        return quantized_copy(load_model(base), bits=int(suffix[3:]))
    return load_model(name)


def run(args: argparse.Namespace) -> int:
    from .._io import atomic_write
    from .._render import standalone
    from ..diff import compare, train_crosscoder
    from .anomaly import read_texts

    out = output_dir(args, "out") if args.out else None
    texts = read_texts(args.data)
    a, b = load_variant(args.model_a), load_variant(args.model_b)
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    d = compare(a, b, texts, sites=sites, progress=progress_for(args))
    print(f"{'site':28s} {'divergence':>12s} {'lens KL':>10s}")
    for s, v in d.divergence.items():
        print(f"{s:28s} {v:12.4g} {d.lens_kl.get(s, float('nan')):10.4g}")
    print(f"final next-token KL(A || B): {d.logits_kl:.4g} nats over {d.n_rows} tokens")
    cc = None
    if args.steps > 0:
        site = args.site or f"blocks.{(a.cfg.n_layers or 2) // 2}.resid_post"
        cc = train_crosscoder(a, b, texts, site=site, d_latent=args.d_latent, k=args.k, steps=args.steps,
                              progress=progress_for(args))  # fmt: skip
        print(f"crosscoder at {site}: {cc.counts()}  FVE A {cc.fve['a']:.3f} B {cc.fve['b']:.3f}")
    if out is not None:
        title = f"{args.model_a} vs {args.model_b}"
        body = d.to_html() + (cc.to_html() if cc is not None else "")
        payload = {"model_a": args.model_a, "model_b": args.model_b, **d.to_dict()}
        with out.writing() as folder:
            atomic_write(folder / "report.html", standalone(f"tsi diff: {title}", f"<h1>{title}</h1>" + body))
            if cc is not None:
                payload["crosscoder"] = cc.to_dict()
                cc.save(folder / "crosscoder")
            atomic_write(folder / "diff.json", json.dumps(payload, indent=1))
        print(f"wrote {out.path / 'report.html'}")
    return 0
