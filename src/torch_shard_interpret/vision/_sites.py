"""Canonical sites of image models, as data: a map from canonical name to the raw site that holds it.

CNNs (``[batch, channels, height, width]`` feature maps)::

    stem                    the stem's output
    stages.{i}              the output of stage i (ResNet ``layer{i+1}``, ConvNeXt ``features.{2i+1}``,
                            VGG: the max-pool that ends stage i)
    stages.{i}.blocks.{j}   the output of block j of stage i (VGG: conv j of stage i, after its ReLU)
    pool                    the pooled features
    logits                  [batch, n_classes]

ViTs use the language-model names (``[batch, pos, d_model]``, the class token at position 0):
``embed``, ``blocks.{i}.resid_pre``/``resid_post``, ``blocks.{i}.attn.out``, ``blocks.{i}.mlp.post``,
``blocks.{i}.mlp.out``, ``final_norm``, ``logits``; timm's ViT also has ``blocks.{i}.attn.z``
``[batch, pos, n_heads, d_head]`` and ``blocks.{i}.attn.pattern`` ``[batch, n_heads, q_pos, k_pos]``
(the pattern needs ``eager_attention(model)``: timm's fused attention never forms it). torchvision's ViT
calls ``nn.MultiheadAttention`` with ``need_weights=False`` and never calls ``out_proj`` as a module, so
it has neither. Maps are chosen by the module's class (torchvision / timm ResNet, VGG, ConvNeXt,
VisionTransformer, and the embedded ``DigitsCNN``); any other module keeps raw sites only.
Nothing here imports torchvision or timm.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from torch import nn

from ..core._model import Model
from ..core._site import HEADS, PATTERN, RESID

FMAP = ("batch", "channel", "height", "width")
# canonical name -> (raw site name, layout, n_heads)
SiteMap = dict[str, tuple[str, tuple[str, ...] | None, int | None]]


def _family(module: nn.Module) -> str | None:
    cls = type(module)
    lib = cls.__module__.split(".")[0]
    name = cls.__name__
    if name == "DigitsCNN":
        return "digits"
    if lib in ("torchvision", "timm") and name in ("ResNet", "VGG", "ConvNeXt", "VisionTransformer"):
        return f"{lib}.{name}"
    return None


def _resnet(m: Any, stem: str, pool: str) -> SiteMap:
    out: SiteMap = {"stem": (f"{stem}:output", FMAP, None)}
    for i in range(4):
        layer = getattr(m, f"layer{i + 1}")
        out[f"stages.{i}"] = (f"layer{i + 1}:output", FMAP, None)
        for j in range(len(layer)):
            out[f"stages.{i}.blocks.{j}"] = (f"layer{i + 1}.{j}:output", FMAP, None)
    out["pool"] = (f"{pool}:output", None, None)
    out["logits"] = ("fc:output", ("batch", "n_classes"), None)
    return out


def _digits(m: Any) -> SiteMap:
    out: SiteMap = {"stem": ("stem:output", FMAP, None)}
    for i in range(4):
        out[f"stages.{i}"] = (f"layer{i + 1}:output", FMAP, None)
    out["pool"] = ("pool:output", None, None)
    out["logits"] = ("fc:output", ("batch", "n_classes"), None)
    return out


def _vgg(m: Any) -> SiteMap:
    out: SiteMap = {}
    stage, block = 0, 0
    for idx, layer in enumerate(m.features):
        if isinstance(layer, nn.ReLU):
            out[f"stages.{stage}.blocks.{block}"] = (f"features.{idx}:output", FMAP, None)
            block += 1
        elif isinstance(layer, nn.MaxPool2d):
            out[f"stages.{stage}"] = (f"features.{idx}:output", FMAP, None)
            stage, block = stage + 1, 0
    out["pool"] = ("avgpool:output", FMAP, None)
    out["logits"] = ("classifier:output", ("batch", "n_classes"), None)
    return out


def _convnext(m: Any) -> SiteMap:
    out: SiteMap = {"stem": ("features.0:output", FMAP, None)}
    for i, idx in enumerate(range(1, len(m.features), 2)):
        out[f"stages.{i}"] = (f"features.{idx}:output", FMAP, None)
        for j in range(len(m.features[idx])):
            out[f"stages.{i}.blocks.{j}"] = (f"features.{idx}.{j}:output", FMAP, None)
    out["pool"] = ("avgpool:output", None, None)
    out["logits"] = ("classifier:output", ("batch", "n_classes"), None)
    return out


def _vit_torchvision(m: Any) -> SiteMap:
    out: SiteMap = {"embed": ("encoder.dropout:output", RESID, None)}
    for i, (child, _) in enumerate(m.encoder.layers.named_children()):  # encoder_layer_0, ...
        b, p = f"blocks.{i}", f"encoder.layers.{child}"
        out[f"{b}.resid_pre"] = (f"{p}:input", RESID, None)
        out[f"{b}.attn.out"] = (f"{p}.self_attention:output.0", RESID, None)
        out[f"{b}.mlp.post"] = (f"{p}.mlp.3:input", ("batch", "pos", "d_mlp"), None)
        out[f"{b}.mlp.out"] = (f"{p}.mlp:output", RESID, None)
        out[f"{b}.resid_post"] = (f"{p}:output", RESID, None)
    out["final_norm"] = ("encoder.ln:output", RESID, None)
    out["logits"] = ("heads:output", ("batch", "n_classes"), None)
    return out


def _vit_timm(m: Any) -> SiteMap:
    out: SiteMap = {"embed": ("norm_pre:output", RESID, None)}
    for i, block in enumerate(m.blocks):
        b, p = f"blocks.{i}", f"blocks.{i}"
        heads = block.attn.num_heads
        out[f"{b}.resid_pre"] = (f"{p}:input", RESID, None)
        out[f"{b}.attn.z"] = (f"{p}.attn.proj:input", HEADS, heads)
        out[f"{b}.attn.pattern"] = (f"{p}.attn.attn_drop:output", PATTERN, None)
        out[f"{b}.attn.out"] = (f"{p}.attn:output", RESID, None)
        out[f"{b}.mlp.post"] = (f"{p}.mlp.fc2:input", ("batch", "pos", "d_mlp"), None)
        out[f"{b}.mlp.out"] = (f"{p}.mlp:output", RESID, None)
        out[f"{b}.resid_post"] = (f"{p}:output", RESID, None)
    out["final_norm"] = ("norm:output", RESID, None)
    out["logits"] = ("head:output", ("batch", "n_classes"), None)
    return out


_MAPS = {
    "digits": _digits,
    "torchvision.ResNet": lambda m: _resnet(m, "maxpool", "avgpool"),
    "timm.ResNet": lambda m: _resnet(m, "maxpool", "global_pool"),
    "torchvision.VGG": _vgg,
    "torchvision.ConvNeXt": _convnext,
    "torchvision.VisionTransformer": _vit_torchvision,
    "timm.VisionTransformer": _vit_timm,
}


def site_map(module: nn.Module) -> SiteMap:
    """The canonical sites of ``module`` as ``{name: (raw site, layout, n_heads)}``; empty when unknown."""
    family = _family(module)
    return _MAPS[family](module) if family in _MAPS else {}


def wrap(module: nn.Module) -> Model:
    """``module`` as a ``tsi.Model`` with the canonical vision sites of its architecture plus raw sites."""
    model = Model(module, adapter=None)
    canonical = {}
    for name, (raw, layout, n_heads) in site_map(module).items():
        site = model.site(raw)
        canonical[name] = replace(site, name=name, layout=layout, n_heads=n_heads, extra={})
    # The core has no public call to add named sites yet; these are plain Site records on the raw modules.
    model._sites = {**canonical, **model._sites}
    model._globs.clear()
    return model


@contextmanager
def eager_attention(model: Model) -> Iterator[None]:
    """Inside the block, timm attention modules form their pattern explicitly (``fused_attn = False``), so
    ``blocks.{i}.attn.pattern`` is reached; the previous setting is restored afterwards."""
    saved = [(m, m.fused_attn) for m in model.module.modules() if hasattr(m, "fused_attn")]
    try:
        for m, _ in saved:
            object.__setattr__(m, "fused_attn", False)
        yield
    finally:
        for m, value in saved:
            object.__setattr__(m, "fused_attn", value)
