"""Run by test_ddp.py under `python -m torch.distributed.run --nproc_per_node 2`: train, rank 0 saves."""

from __future__ import annotations

import os
import sys

import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.sae import TrainConfig


def data() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(48, 24, generator=g), dim=-1)
    on = torch.rand(1000, 48, generator=g) < 0.06
    return (on * torch.rand(1000, 48, generator=g)) @ dirs


def run(kind: str) -> tsi.sae.SAE:
    tcfg = TrainConfig(steps=25, batch_size=250, seed=3, dead_after_tokens=500)  # AuxK active early
    extra = {"l1_coefficient": 0.5} if kind == "relu" else {}
    return tsi.sae.train(data(), {"kind": kind, "d_sae": 64, "k": 4, **extra}, tcfg, progress=False)


if __name__ == "__main__":
    torch.set_num_threads(1)
    out, kind = sys.argv[1], sys.argv[2]
    sae = run(kind)
    import torch.distributed as dist

    assert not dist.is_initialized()  # train() destroyed the group it created
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(sae.state_dict(), out)
    # torch 2.13 + gloo on CPU aborts about 1 exit in 8 ("terminate called without an active exception")
    # after destroy_process_group, while the interpreter shuts down; all work is done and saved here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
