"""Throughput of anomaly detection and crosscoder training (tsi.anomaly, tsi.diff).

A. On the embedded model (SmolLM2-135M, fp32, CPU), the first ``--texts`` of the 48 English sentences of the distribution-shift task
   (batch 16): tokens/s of a plain forward (``model.run`` with no cache), of ``tsi.anomaly.fit`` (Mahalanobis,
   30 ``blocks.*.resid_post`` sites, features + fit) and of ``det.score``.
B. Training throughput (rows/s) of a BatchTopK crosscoder against ``tsi.sae.train`` (BatchTopK) at the same
   width, on the same ``[n, 576]`` activations (the crosscoder reads a pair: the model and its int8 copy).

Medians over ``--rounds`` interleaved rounds. Results are printed; copy them into benchmarks/README.md.

    PYTHONPATH=src python benchmarks/bench_anomaly.py [--rounds 3] [--steps 40] [--width 2304]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.anomaly._bench import shift_texts
from torch_shard_interpret.diff._crosscoder import fit_crosscoder


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--width", type=int, default=2304)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--texts", type=int, default=48, help="how many of the 48 sentences to run (part A)")
    args = ap.parse_args()
    model = tsi.load("smollm2-135m")
    texts = shift_texts()["prose"][: args.texts]
    n_tok = int(model.run(texts).attention_mask.sum())
    sites = "blocks.*.resid_post"

    def forward():
        for i in range(0, len(texts), 16):
            model.run(texts[i : i + 16])

    det = tsi.anomaly.fit(model, texts, sites=sites, progress=False)
    cases = {
        "plain forward (model.run)": forward,
        "anomaly.fit mahalanobis, 30 sites": lambda: tsi.anomaly.fit(
            model, texts, sites=sites, progress=False
        ),
        "det.score, 30 sites": lambda: det.score(texts, batch_size=16),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            times[name].append(_time(fn))
    print(f"A. {len(texts)} texts, {n_tok} tokens, torch threads {torch.get_num_threads()}")
    base = statistics.median(times["plain forward (model.run)"])
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"  {name:40s} {n_tok / t:9.0f} tokens/s  {t / base:5.2f}x the forward time")

    q = tsi.diff.quantized_copy(model, bits=8)
    from torch_shard_interpret.diff._latents import paired_rows

    xa, xb, _ = paired_rows(model, q, texts * 4, "blocks.15.resid_post")
    batch = min(1024, len(xa))
    rows_per_run = args.steps * batch
    train = {
        f"sae.train batchtopk d_sae={args.width}": lambda: tsi.sae.train(
            xa,
            {"kind": "batchtopk", "d_sae": args.width, "k": args.k},
            {"steps": args.steps, "batch_size": batch},
            progress=False,
        ),
        f"crosscoder batchtopk d_latent={args.width}": lambda: fit_crosscoder(
            xa, xb, args.width, args.k, args.steps, batch, 1e-3, progress=False
        ),
    }
    ttimes: dict[str, list[float]] = {k: [] for k in train}
    for _ in range(args.rounds):
        for name, fn in train.items():
            ttimes[name].append(_time(fn))
    print(f"B. {len(xa)} paired rows of width {xa.shape[1]}, {args.steps} steps of {batch} rows, k={args.k}")
    for name, ts in ttimes.items():
        t = statistics.median(ts)
        print(f"  {name:40s} {rows_per_run / t:9.0f} rows/s  ({t:.2f} s)")


if __name__ == "__main__":
    main()
