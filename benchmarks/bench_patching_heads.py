"""The layer x position x head grid of activation patching (``heads="grid"``) on the embedded SmolLM2-135M.

For each of ``attn.z``, ``attn.k`` (3 key/value heads, 3 query heads each) and ``attn.pattern`` (eager
attention) at a few layers, one run times on the IOI pair (fp32, CPU):

- ``tsi`` batched: ``activation_patching(..., heads="grid")`` with its defaults (shared prefix, reused KV);
- the same with fixed batches (``share_prefix=False, reuse_kv=False``);
- the loop: one ``model.run`` per cell that can change the run, with ``tsi.Patch(clean, positions=[p],
  heads=group)`` (``attn.pattern``: the scores set to the log of the clean pattern);

and prints the largest difference between the batched grid and the loop.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_patching_heads.py [--threads 1] [--layers 0,10,20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import torch_shard_interpret as tsi  # noqa: E402

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When John and Mary went to the store, Mary gave a drink to"


def _intervention(clean, site: str, heads: list[int], p: int):
    if not site.endswith("pattern"):
        return {site: tsi.Patch(clean.cache[site], heads=heads, positions=[p])}
    want = clean.cache[site]

    def set_pattern(scores, ctx):
        out = scores.clone()
        out[:, heads, p] = want[:, heads, p].log().to(scores.dtype)
        return out

    return {site.replace("pattern", "scores"): tsi.Fn(set_pattern)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--layers", default="0,10,20", help="comma-separated layers (default 0,10,20)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = tsi.load("smollm2-135m")
    model.set_attention("eager")
    mary, john = model.token_id(" Mary"), model.token_id(" John")

    def metric(logits):
        return logits[:, -1, mary] - logits[:, -1, john]

    layers = [int(x) for x in args.layers.split(",")]
    print(f"threads {args.threads}, layers {layers}, {model.to_tokens(CLEAN).shape[1]} positions\n")
    print(
        "| site | grid | cells run | batched s | fixed batches s | loop s | loop / batched | max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for part in ("z", "k", "pattern"):
        sites = [f"blocks.{i}.attn.{part}" for i in layers]
        kw = dict(sites=sites, heads="grid", progress=False)
        t = time.perf_counter()
        res = tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, **kw)
        batched = time.perf_counter() - t
        t = time.perf_counter()
        tsi.patching.activation_patching(
            model, CLEAN, CORRUPT, metric, share_prefix=False, reuse_kv=False, **kw
        )
        fixed = time.perf_counter() - t
        clean = model.run(CLEAN, cache=sites)
        groups = res.head_groups or [[h] for h in res.heads or []]
        loop = torch.zeros_like(res.raw)
        t = time.perf_counter()
        for i, site in enumerate(sites):
            for p, (pos,) in enumerate(res.positions):
                for h, heads in enumerate(groups):
                    if res.raw[i, p, h] == 0:  # a cell that cannot change the run (the batched code skips it)
                        continue
                    out = model.run(CORRUPT, interventions=_intervention(clean, site, heads, pos))
                    loop[i, p, h] = float(metric(out.logits)[0]) - res.corrupt_metric
        looped = time.perf_counter() - t
        diff = float((loop - res.raw).abs().max())
        shape = "x".join(map(str, res.effects.shape))
        print(
            f"| attn.{part} | {shape} | {res.info['cells_run']} | {batched:.2f} | {fixed:.2f} | {looped:.2f} "
            f"| {looped / batched:.2f}x | {diff:.1e} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
