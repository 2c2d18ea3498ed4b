"""Edge effects computed by hand with plain PyTorch hooks on a Hugging Face LLaMA (the reference for tests)."""

from __future__ import annotations

import torch


def _sources(module, ids):
    """Every source's residual write for ``ids``: dict name -> [n, p, d]."""
    out, handles = {}, []
    cfg = module.config
    H, dh = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
    handles.append(
        module.model.embed_tokens.register_forward_hook(lambda m, a, o: out.__setitem__("input", o))
    )
    for i, layer in enumerate(module.model.layers):

        def z_hook(m, args, i=i):
            z = args[0]
            for h in range(H):
                out[f"a{i}.h{h}"] = z[..., h * dh : (h + 1) * dh] @ m.weight[:, h * dh : (h + 1) * dh].T

        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(z_hook))
        handles.append(layer.mlp.register_forward_hook(lambda m, a, o, i=i: out.__setitem__(f"m{i}", o)))
    try:
        with torch.no_grad():
            module(ids)
    finally:
        for h in handles:
            h.remove()
    return out


def edge_metric(module, clean, corrupt, metric, edge, eps):
    """Mean metric with ``eps * (corrupt - clean)`` of the edge's source added to its destination's input only."""
    src, dst = edge.split("->")
    delta = _sources(module, corrupt)[src] - _sources(module, clean)[src]
    cfg = module.config
    dh = cfg.hidden_size // cfg.num_attention_heads
    handles = []
    if dst == "logits":
        handles.append(module.model.norm.register_forward_pre_hook(lambda m, a: (a[0] + eps * delta,)))
    elif "<" not in dst:
        layer = module.model.layers[int(dst[1:])]
        handles.append(
            layer.post_attention_layernorm.register_forward_pre_hook(lambda m, a: (a[0] + eps * delta,))
        )
    else:
        node, kind = dst[:-3], dst[-2]
        layer_i, head = node[1:].split(".")
        layer = module.model.layers[int(layer_i)]
        h = int(head.lstrip("hkv"))
        proj = getattr(layer.self_attn, f"{kind}_proj")
        seen = {}
        handles.append(
            layer.input_layernorm.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0]))
        )
        busy = []

        def out_hook(m, a, o):
            if busy:
                return None
            busy.append(1)
            try:
                new = proj(layer.input_layernorm(seen["x"] + eps * delta))
            finally:
                busy.pop()
            o = o.clone()
            o[..., h * dh : (h + 1) * dh] = new[..., h * dh : (h + 1) * dh]
            return o

        handles.append(proj.register_forward_hook(out_hook))
    try:
        return metric(module(clean).logits).mean()
    finally:
        for hd in handles:
            hd.remove()
