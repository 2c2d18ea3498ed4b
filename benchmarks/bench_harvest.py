"""Harvest throughput on the embedded model (SmolLM2-135M, 30 layers, d_model 576), CPU, fp32.

Cases, interleaved over rounds (each round harvests the same rows once per case into a fresh folder):

- plain forward: ``model.module(ids)`` over the same batches (full forward with logits), no store;
- harvest ``blocks.6.resid_post`` (the forward stops after block 6);
- harvest ``blocks.29.resid_post`` (one site at the last block: the whole forward plus the store);
- harvest all 30 ``blocks.*.resid_post``.

Reported: tokens/s, the ratio of each harvest's throughput to the plain forward (target for one site
>= 0.9), bytes written and the disk write rate (MB/s over the harvest's wall time). Medians over rounds.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_harvest.py --rounds 3 --rows 64 --threads 1
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=64, help="sequences per harvest")
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dir", default=None, help="where to write the stores (default: a temp folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import torch_shard_interpret as tsi
    from torch_shard_interpret.store import _harvest

    write_s = [0.0]  # time inside the atomic shard writes (write + fsync + rename), for the disk rate
    original_write = _harvest.atomic_write

    def timed_write(path, data, tag=""):
        t = time.perf_counter()
        original_write(path, data, tag)
        if path.name.startswith("shard-"):
            write_s[0] += time.perf_counter() - t

    _harvest.atomic_write = timed_write
    model = tsi.load("smollm2-135m")
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(100, model.cfg.d_vocab or 49152, (args.rows, args.context), generator=gen)
    n_tokens = ids.numel()
    root = Path(args.dir or tempfile.mkdtemp(prefix="tsi-bench-harvest-"))
    root.mkdir(parents=True, exist_ok=True)

    def plain() -> int:
        with torch.inference_mode():
            for a in range(0, len(ids), args.batch_size):
                model.module(ids[a : a + args.batch_size])
        return 0, 0.0

    def harvest(sites: str):
        def go() -> int:
            path = root / "store"
            shutil.rmtree(path, ignore_errors=True)
            write_s[0] = 0.0
            store = tsi.store.harvest(model, ids, sites=sites, path=path, batch_size=args.batch_size,
                                      progress=False)  # fmt: skip
            return sum(s["bytes"] for s in store.shards), write_s[0]

        return go

    cases = {
        "plain forward (logits)": plain,
        "harvest blocks.6.resid_post": harvest("blocks.6.resid_post"),
        "harvest blocks.29.resid_post": harvest("blocks.29.resid_post"),
        "harvest 30 x blocks.*.resid_post": harvest("blocks.*.resid_post"),
    }
    plain()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in cases}
    ratios: dict[str, list[float]] = {k: [] for k in cases}
    written: dict[str, int] = {}
    disk_s: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(args.rounds):
        names = list(cases)
        names = names[r % len(names) :] + names[: r % len(names)]
        this: dict[str, float] = {}
        for name in names:
            t = time.perf_counter()
            written[name], w = cases[name]()
            disk_s[name].append(w)
            this[name] = time.perf_counter() - t
            times[name].append(this[name])
        for name in cases:
            ratios[name].append(this["plain forward (logits)"] / this[name])
    shutil.rmtree(root / "store", ignore_errors=True)

    print(f"embedded SmolLM2-135M, fp32, CPU threads {args.threads}, {args.rows} x {args.context} tokens, "
          f"batch {args.batch_size}, {args.rounds} rounds (medians)\n")  # fmt: skip
    print("| case | tokens/s | throughput vs plain forward | written MB | MB/s over the harvest | "
          "disk write MB/s (shard writes alone) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for name in cases:
        t = statistics.median(times[name])
        mb = written[name] / 1e6
        rate = f"{mb / t:.1f}" if mb else "-"
        disk = f"{mb / max(statistics.median(disk_s[name]), 1e-9):.0f}" if mb else "-"
        print(f"| {name} | {n_tokens / t:,.0f} | {statistics.median(ratios[name]):.2f}x | "
              f"{mb:.1f} | {rate} | {disk} |")  # fmt: skip


if __name__ == "__main__":
    main()
