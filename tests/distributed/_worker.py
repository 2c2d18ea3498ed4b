"""Shared worker scaffolding: start the group, run the body, save rank 0's result, always clean up."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from torch_shard_interpret import distributed as tsid


def main(body: Callable[[], Any]) -> None:
    """Run ``body()`` on every rank inside ``tsid.process_group()``; rank 0 saves what it returns."""
    code = 0
    try:
        with tsid.process_group():
            result = body()
            if tsid.is_main():
                torch.save(result, Path(os.environ["TSI_TEST_OUT"]) / "result.pt")
    except BaseException:  # noqa: BLE001 - report any failure through the exit code and the log
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0 (a list in rank order); None elsewhere."""
    import torch.distributed as dist

    parts: list[Any] = [None] * tsid.world_size()
    dist.gather_object(obj, parts if tsid.is_main() else None, dst=0)
    return parts if tsid.is_main() else None


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.float() - b.float()).abs().max())
