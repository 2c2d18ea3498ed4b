"""Harvesting and SAE training each start the process group themselves; both must use ``$TSI_DIST_TIMEOUT``.

Usage: ``worker_timeout.py OUT_DIR harvest|sae``. Each rank records the timeout of the live process group, as
the gloo backend holds it, from inside a harvest (a forward pre-hook) or inside SAE training (the step
callback), and writes it to ``OUT_DIR/{path}-rank{r}.json``. No process group runs before or after the call.
(One path per launch: a gloo group cannot be started again in the process that destroyed one.)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

import torch_shard_interpret as tsi
from torch_shard_interpret import distributed as tsid
from torch_shard_interpret.sae import TrainConfig
from torch_shard_interpret.testing import tiny_hf_model


def seen_now() -> dict:
    return {"timeout": tsid.group_timeout(), "world": tsid.world_size(), "rank": tsid.rank()}


def main() -> None:
    out, path = Path(sys.argv[1]), sys.argv[2]
    record: dict = {"before": tsid.is_initialized()}
    if path == "harvest":
        model = tsi.wrap(tiny_hf_model("llama", seed=0))

        def note(module, args):  # returns None: the inputs are left alone
            record.setdefault("seen", seen_now())

        hook = model.module.register_forward_pre_hook(note)
        try:
            ids = torch.randint(4, 100, (8, 6), generator=torch.Generator().manual_seed(0))
            tsi.store.harvest(model, ids, sites=["blocks.0.resid_post"], path=out / "store", progress=False)
        finally:
            hook.remove()
    else:
        x = torch.randn(256, 16, generator=torch.Generator().manual_seed(1))
        tsi.sae.train(x, {"kind": "topk", "d_sae": 16, "k": 2}, TrainConfig(steps=2, batch_size=64),
                      progress=False, callback=lambda step, m: record.setdefault("seen", seen_now()))  # fmt: skip
    record["after"] = tsid.is_initialized()
    (out / f"{path}-rank{os.environ['RANK']}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # gloo on CPU may abort while the interpreter shuts down; everything is written
