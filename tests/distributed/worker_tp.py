"""Tensor parallelism on 2 ranks: Hugging Face ``tp_plan="auto"`` and torch ``parallelize_module``.

Every rank compares the TP model with an unsharded copy of the same weights; rank 0 saves the largest
differences of every rank. Usage: ``worker_tp.py MODEL_DIR``.
"""

from __future__ import annotations

import sys

import torch
from _worker import gather_to_main, main, max_diff

import torch_shard_interpret as tsi
from torch_shard_interpret import distributed as tsid

IDS = torch.randint(4, 128, (2, 7), generator=torch.Generator().manual_seed(0))
CORRUPT = torch.randint(4, 128, (2, 7), generator=torch.Generator().manual_seed(1))


def torch_tp(path: str):
    """The plain model, parallelised with torch's own styles (outputs of colwise layers are local)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path).eval()
    mesh = init_device_mesh("cpu", (tsid.world_size(),))
    plan = {
        "self_attn.q_proj": ColwiseParallel(),
        "self_attn.k_proj": ColwiseParallel(),
        "self_attn.v_proj": ColwiseParallel(),
        "self_attn.o_proj": RowwiseParallel(),
        "mlp.gate_proj": ColwiseParallel(),
        "mlp.up_proj": ColwiseParallel(),
        "mlp.down_proj": RowwiseParallel(),
    }
    for layer in model.model.layers:
        parallelize_module(layer, mesh, plan)
    return model


def compare(ref: tsi.Model, tp: tsi.Model, tag: str) -> dict[str, float]:
    d: dict[str, float] = {}
    seen: dict[str, list[int]] = {}
    # caching every canonical site
    a = ref.run(IDS, cache="*")
    b = tp.run(IDS, cache="*")
    d[f"{tag}/logits"] = max_diff(a.logits, b.logits)
    for name in a.cache:
        d[f"{tag}/cache/{name}"] = max_diff(a.cache[name], b.cache[name]) if name in b.cache else float("inf")
    d[f"{tag}/cache/count"] = float(len(a.cache) - len(b.cache))
    # patching (source caches from each model itself), head ablation across both ranks' heads, steering
    v = torch.randn(64, generator=torch.Generator().manual_seed(2))
    w = torch.randn(128, generator=torch.Generator().manual_seed(3))
    src_a = ref.run(CORRUPT, cache=["blocks.0.resid_post", "blocks.1.attn.z", "blocks.0.mlp.post"]).cache
    src_b = tp.run(CORRUPT, cache=["blocks.0.resid_post", "blocks.1.attn.z", "blocks.0.mlp.post"]).cache

    def record_shape(value, ctx):
        seen.setdefault(ctx.name, list(value.shape))
        return value * 1.5

    cases = {
        "patch_resid": lambda s: {"blocks.0.resid_post": tsi.Patch(s, positions=[2])},
        "patch_z": lambda s: {"blocks.1.attn.z": tsi.Patch(s, heads=[1, 2])},
        "patch_mlp_post": lambda s: {"blocks.0.mlp.post": tsi.Patch(s, positions=[3, 4])},
        "add": lambda s: {"blocks.0.resid_post": tsi.Add(v, scale=4.0)},
        "add_mlp_post": lambda s: {"blocks.1.mlp.post": tsi.Add(w, scale=2.0)},
        "ablate_heads": lambda s: {"blocks.1.attn.z": tsi.Ablate("mean", heads=[1, 3])},
        "ablate_zero": lambda s: {"blocks.0.attn.z": tsi.Ablate("zero", heads=2)},
        "fn": lambda s: {"blocks.0.attn.z": tsi.Fn(record_shape), "blocks.0.mlp.post": tsi.Fn(record_shape)},
    }
    for case, make in cases.items():
        la = ref.run(IDS, interventions=make(src_a)).logits
        lb = tp.run(IDS, interventions=make(src_b)).logits
        d[f"{tag}/{case}"] = max_diff(la, lb)
        d[f"{tag}/{case}/changed"] = max_diff(la, a.logits)  # the intervention did something
    # generation with steering (KV cache)
    steer = {"blocks.0.resid_post": tsi.Add(v, scale=8.0)}
    ga = ref.generate(IDS[:1], max_new_tokens=6, interventions=steer)
    gb = tp.generate(IDS[:1], max_new_tokens=6, interventions=steer)
    d[f"{tag}/generate_equal"] = float(torch.equal(ga, gb))
    d[f"{tag}/generate_steered"] = float(not torch.equal(ga, ref.generate(IDS[:1], max_new_tokens=6)))
    # gradients through sharded sites
    sites = ["blocks.0.attn.z", "blocks.0.mlp.post", "blocks.1.resid_post"]
    ra = ref.run(IDS, cache=sites, grad=lambda r: r.logits[0, -1, 5])
    rb = tp.run(IDS, cache=sites, grad=lambda r: r.logits[0, -1, 5])
    for name in sites:
        d[f"{tag}/grad/{name}"] = max_diff(ra.grads[name], rb.grads[name])
    early = tp.run(IDS, cache="blocks.0.mlp.post", return_logits=False).cache["blocks.0.mlp.post"]
    d[f"{tag}/early_stop"] = max_diff(early, a.cache["blocks.0.mlp.post"])
    d[f"{tag}/after_early_stop"] = max_diff(tp.run(IDS).logits, a.logits)
    d[f"{tag}/shape/attn.z"] = float(list(b.cache["blocks.0.attn.z"].shape) == [2, 7, 4, 16])
    d[f"{tag}/shape/fn_z"] = float(seen.get("blocks.0.attn.z") == [2, 7, 4, 16])
    d[f"{tag}/shape/fn_mlp_post"] = float(seen.get("blocks.0.mlp.post") == [2, 7, 128])
    return d


def body():
    from transformers import AutoModelForCausalLM

    path = sys.argv[1]
    ref = tsi.wrap(AutoModelForCausalLM.from_pretrained(path).eval())
    hf = AutoModelForCausalLM.from_pretrained(path, tp_plan="auto").eval()
    assert type(hf.model.layers[0].self_attn.o_proj.weight).__name__ == "DTensor"
    diffs = compare(ref, tsi.wrap(hf), "hf")
    diffs.update(compare(ref, tsi.wrap(torch_tp(path)), "torch"))
    return gather_to_main(diffs)


if __name__ == "__main__":
    main(body)
