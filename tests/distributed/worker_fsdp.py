"""FSDP2 on 2 ranks: ``fully_shard`` on every block and the root, each rank running its own rows.

Every rank compares with an unsharded copy of the same weights on the same rows; rank 0 also checks the
caches gathered from both ranks against the unsharded model on all rows. Usage: ``worker_fsdp.py MODEL_DIR``.
"""

from __future__ import annotations

import sys

import torch
from _worker import gather_to_main, main, max_diff

import torch_shard_interpret as tsi
from torch_shard_interpret import distributed as tsid

ALL_IDS = torch.randint(4, 128, (4, 7), generator=torch.Generator().manual_seed(0))
CORRUPT = torch.randint(4, 128, (4, 7), generator=torch.Generator().manual_seed(1))
SITES = ["embed", "blocks.*.resid_post", "blocks.*.attn.z", "blocks.*.mlp.post", "blocks.1.attn.out"]


def body():
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from transformers import AutoModelForCausalLM

    path = sys.argv[1]
    ref = tsi.wrap(AutoModelForCausalLM.from_pretrained(path).eval())
    module = AutoModelForCausalLM.from_pretrained(path).eval()
    mesh = init_device_mesh("cpu", (tsid.world_size(),))
    for layer in module.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(module, mesh=mesh)
    assert type(module.model.layers[0].mlp.down_proj.weight).__name__ == "DTensor"
    model = tsi.wrap(module)

    ids = ALL_IDS[tsid.rank() * 2 : tsid.rank() * 2 + 2]  # this rank's rows
    corrupt = CORRUPT[tsid.rank() * 2 : tsid.rank() * 2 + 2]
    d: dict[str, float] = {}
    a = ref.run(ids, cache=SITES)
    b = model.run(ids, cache=SITES)
    d["logits"] = max_diff(a.logits, b.logits)
    for name in a.cache:
        d[f"cache/{name}"] = max_diff(a.cache[name], b.cache[name])
    d["cache/count"] = float(len(a.cache) - len(b.cache))

    v = torch.randn(64, generator=torch.Generator().manual_seed(2))
    src_a = ref.run(corrupt, cache=["blocks.0.resid_post", "blocks.1.attn.z"]).cache
    src_b = model.run(corrupt, cache=["blocks.0.resid_post", "blocks.1.attn.z"]).cache
    cases = {
        "patch": lambda s: {
            "blocks.0.resid_post": tsi.Patch(s, positions=[2]),
            "blocks.1.attn.z": tsi.Patch(s),
        },
        "add": lambda s: {"blocks.0.resid_post": tsi.Add(v, scale=4.0)},
        "ablate_heads": lambda s: {"blocks.1.attn.z": tsi.Ablate("mean", heads=[1, 3])},
    }
    for case, make in cases.items():
        la = ref.run(ids, interventions=make(src_a)).logits
        lb = model.run(ids, interventions=make(src_b)).logits
        d[case] = max_diff(la, lb)
        d[f"{case}/changed"] = max_diff(la, a.logits)

    early = model.run(ids, cache="blocks.0.mlp.post", return_logits=False).cache["blocks.0.mlp.post"]
    d["early_stop"] = max_diff(early, a.cache["blocks.0.mlp.post"])
    d["after_early_stop"] = max_diff(model.run(ids).logits, a.logits)

    sites = ["blocks.0.attn.z", "blocks.0.mlp.post", "blocks.1.resid_post"]
    ra = ref.run(ids, cache=sites, grad=lambda r: r.logits[0, -1, 5])
    rb = model.run(ids, cache=sites, grad=lambda r: r.logits[0, -1, 5])
    for name in sites:
        d[f"grad/{name}"] = max_diff(ra.grads[name], rb.grads[name])

    # steering while generating; synced_gpus keeps every rank stepping until all are done
    steer = {"blocks.0.resid_post": tsi.Add(v, scale=8.0)}
    ga = ref.generate(ids[:1], max_new_tokens=5, interventions=steer)
    gb = model.generate(ids[:1], max_new_tokens=5, interventions=steer, synced_gpus=True)
    d["generate_equal"] = float(torch.equal(ga, gb))

    # gather the data-parallel caches on rank 0 and compare with the unsharded model on all rows
    joined = tsid.gather_cache(b.cache)
    ran = tsid.run(model, ids, cache="blocks.*.resid_post", gather="rank0")
    everyone = tsid.run(model, ids, cache="blocks.1.resid_post", gather="all")
    full = ref.run(ALL_IDS, cache=SITES)
    d["gather_all/logits"] = max_diff(everyone.logits, full.logits)
    if tsid.is_main():
        d["gather/count"] = float(len(joined) - len(full.cache))
        for name in full.cache:
            d[f"gather/{name}"] = max_diff(joined[name], full.cache[name])
        d["run/logits"] = max_diff(ran.logits, full.logits)
        d["run/tokens"] = float(not torch.equal(ran.tokens, ALL_IDS))
        d["run/resid"] = max_diff(ran.cache["blocks.1.resid_post"], full.cache["blocks.1.resid_post"])
    else:
        d["gather/none_off_main"] = float(joined is not None)
    return gather_to_main(d)


if __name__ == "__main__":
    main(body)
