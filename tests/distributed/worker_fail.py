"""Rank 1 dies or hangs; rank 0 must raise ``DistributedError`` within the timeout instead of hanging.

Usage: ``worker_fail.py MODE [MODEL_DIR]`` with MODE one of
``die`` (rank 1 exits before a barrier), ``hang`` (rank 1 stays alive but never joins ``gather_cache``),
``die_forward`` (rank 1 exits inside a tensor-parallel forward, between two collectives).
Rank 0 prints ``DISTRIBUTED-ERROR: <message>`` and exits with code 3 once it has caught the error.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

import torch_shard_interpret as tsi
from torch_shard_interpret import distributed as tsid

DONE = Path(os.environ["TSI_TEST_OUT"]) / "rank0-done"


def rank1_waits() -> None:
    """Stay alive without taking part, until rank 0 is done (at most a minute)."""
    deadline = time.monotonic() + 60
    while not DONE.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def body(mode: str) -> None:
    if mode == "die":
        if tsid.rank() == 1:
            os._exit(1)
        tsid.barrier()
    elif mode == "hang":
        if tsid.rank() == 1:
            rank1_waits()
            return
        tsid.gather_cache({"x": torch.ones(2, 3)})
    elif mode == "die_forward":
        from transformers import AutoModelForCausalLM

        model = tsi.wrap(AutoModelForCausalLM.from_pretrained(sys.argv[2], tp_plan="auto").eval())

        def die(value, ctx):
            if tsid.rank() == 1:
                os._exit(1)
            return value

        ids = torch.randint(4, 128, (1, 5), generator=torch.Generator().manual_seed(0))
        tsid.run(model, ids, interventions={"blocks.1.resid_pre": tsi.Fn(die)}, gather=None)
    raise AssertionError(f"rank {tsid.rank()}: no error was raised")


def main() -> None:
    mode = sys.argv[1]
    code = 0
    start = time.monotonic()
    try:
        with tsid.process_group():
            body(mode)
    except tsid.DistributedError as exc:
        print(f"DISTRIBUTED-ERROR after {time.monotonic() - start:.1f} s: {exc}", flush=True)
        code = 3
    finally:
        if tsid.rank() == 0 or not tsid.is_initialized():
            DONE.touch()
    print(f"RANK-EXIT {os.environ.get('RANK')} {code}", flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
