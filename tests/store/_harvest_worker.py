"""A harvest on a tiny model, run as its own process by the kill/resume and data-parallel tests.

    python _harvest_worker.py --out DIR [--resume] [--sleep S] [--die-after-shards N --die-rank R]

Under torchrun (or with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set) ``tsi.store.harvest`` joins the
process group itself (gloo, timeout from $TSI_DIST_TIMEOUT) and destroys it at the end. The tests import
``harvest_tiny`` from here to build the single-process reference with exactly the same settings.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

import torch

SITES = ["blocks.0.resid_post", "blocks.1.mlp.out"]
CONTEXT = 16
BATCH = 2
SHARD_ROWS = 2  # sequences per shard: many small shards


def texts(n_docs: int = 60) -> list[str]:
    from torch_shard_interpret.testing._models import WORDS

    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 15))) for _ in range(n_docs)]


def tiny_model():
    import torch_shard_interpret as tsi
    from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

    return tsi.wrap(tiny_hf_model("llama", seed=0), tiny_tokenizer())


def harvest_tiny(out, resume: bool = False, model=None, **kwargs):
    import torch_shard_interpret as tsi

    return tsi.store.harvest(
        model or tiny_model(), texts(), sites=SITES, path=out, context=CONTEXT, batch_size=BATCH,
        shard_rows=SHARD_ROWS, resume=resume, progress=False, **kwargs,
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep before each forward")
    parser.add_argument("--die-after-shards", type=int, default=0, help="os._exit after writing N shards")
    parser.add_argument("--die-rank", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the same kernels as the in-process reference

    import torch_shard_interpret as tsi
    from torch_shard_interpret.store import _harvest

    rank = int(os.environ.get("RANK", "0"))
    if args.sleep:
        original_run = tsi.Model.run

        def slow_run(self, *a, **k):
            time.sleep(args.sleep)
            return original_run(self, *a, **k)

        tsi.Model.run = slow_run
    if args.die_after_shards and rank == args.die_rank:
        written = []
        original_write = _harvest.atomic_write

        def dying_write(path, data, tag=""):
            original_write(path, data, tag)
            if path.name.startswith("shard-"):
                written.append(path.name)
                if len(written) == args.die_after_shards:
                    os._exit(17)  # like a crash: no cleanup, no exception handlers

        _harvest.atomic_write = dying_write
    try:
        store = harvest_tiny(args.out, resume=args.resume)
        print(f"rank {rank}: {len(store)} rows")
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
