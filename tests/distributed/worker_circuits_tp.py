"""Circuits under tensor parallelism on 2 ranks: EAP, EAP-IG and exact patching equal the unsharded model.

Usage: ``worker_circuits_tp.py MODEL_DIR``. Rank 0 saves every rank's largest score differences.
"""

from __future__ import annotations

import sys

import torch
from _worker import gather_to_main, main, max_diff
from worker_tp import CORRUPT, IDS, torch_tp

import torch_shard_interpret as tsi


def metric(logits):
    return logits[:, -1, 5] - logits[:, -1, 6]


def scores(model: tsi.Model) -> dict[str, torch.Tensor]:
    out = {}
    for method, kw in (("eap", {}), ("eap-ig", {"steps": 3})):
        out[method] = tsi.circuits.attribute(
            model, IDS, CORRUPT, metric, method=method, progress=False, **kw
        ).values
    g = tsi.circuits.graph(model)
    some = g.edges[:: max(1, len(g.edges) // 12)]
    out["patching"] = tsi.circuits.attribute(
        model, IDS, CORRUPT, metric, method="patching", edges=some, progress=False
    ).values.nan_to_num()
    return out


def body():
    from transformers import AutoModelForCausalLM

    path = sys.argv[1]
    ref = scores(tsi.wrap(AutoModelForCausalLM.from_pretrained(path).eval()))
    d = {}
    hf = AutoModelForCausalLM.from_pretrained(path, tp_plan="auto").eval()
    for tag, model in (("hf", tsi.wrap(hf)), ("torch", tsi.wrap(torch_tp(path)))):
        got = scores(model)
        for method, v in ref.items():
            d[f"{tag}/{method}"] = max_diff(v, got[method])
            d[f"{tag}/{method}/scale"] = float(v.abs().max())
    return gather_to_main(d)


if __name__ == "__main__":
    main(body)
