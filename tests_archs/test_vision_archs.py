"""Canonical sites on torchvision ResNet, VGG, ConvNeXt, ViT and timm ResNet, ViT (random weights)."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision

import torch_shard_interpret.vision as tv

CNNS = {
    "torchvision-resnet18": (lambda: torchvision.models.resnet18(num_classes=10), 64, [2, 2, 2, 2]),
    "torchvision-vgg11": (lambda: torchvision.models.vgg11(num_classes=10), 32, [1, 1, 2, 2, 2]),
    "torchvision-convnext": (lambda: torchvision.models.convnext_tiny(num_classes=10), 64, [3, 3, 9, 3]),
    "timm-resnet18": (
        lambda: timm.create_model("resnet18", pretrained=False, num_classes=10),
        64,
        [2, 2, 2, 2],
    ),
}


@pytest.mark.parametrize("name", list(CNNS))
def test_cnn_stage_and_block_sites(name):
    build, size, blocks = CNNS[name]
    module = build().eval()
    model = tv.wrap(module)
    for i, n in enumerate(blocks):
        assert f"stages.{i}" in model.sites() and f"stages.{i}.blocks.{n - 1}" in model.sites()
        assert f"stages.{i}.blocks.{n}" not in model.sites()
    x = torch.randn(2, 3, size, size)
    run = model.run(x, cache=["stages.*", "pool", "logits"])
    with torch.no_grad():
        assert torch.allclose(run.logits, module(x), atol=1e-5)
    assert torch.allclose(run.cache["logits"], run.logits)
    last = len(blocks) - 1
    assert run.cache[f"stages.{last}"].ndim == 4 and run.cache[f"stages.{last}"].shape[0] == 2
    cam = tv.grad_cam(model, x, target=3, site=f"stages.{last}")
    assert cam.shape == (2, size, size) and torch.isfinite(cam.attributions).all()


def test_resnet_grad_cam_on_raw_site_equals_canonical():
    module = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    a = tv.grad_cam(module, x, target=3, site="layer4:output")
    b = tv.grad_cam(module, x, target=3, site="stages.3")
    assert torch.allclose(a.attributions, b.attributions)
    ig = tv.integrated_gradients(module, x, target=3, steps=16)
    assert ig.completeness_error.abs().item() < 0.05 * ig.delta.abs().item() + 1e-3
    vis = tv.visualize(module, tv.channel("stages.1", 4), steps=6, shape=(1, 3, 64, 64), progress=False)
    assert vis.images.shape == (1, 3, 64, 64)


def _timm_vit():
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                             num_classes=10).eval()  # fmt: skip


def _tv_vit():
    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
    ).eval()


@pytest.mark.parametrize("build", [_timm_vit, _tv_vit], ids=["timm", "torchvision"])
def test_vit_transformer_sites_with_class_token_first(build):
    module = build()
    model = tv.wrap(module)
    x = torch.randn(2, 3, 32, 32)
    run = model.run(x, cache=["embed", "blocks.*.resid_pre", "blocks.*.resid_post", "blocks.*.attn.out",
                              "blocks.*.mlp.out", "blocks.*.mlp.post", "final_norm", "logits"])  # fmt: skip
    d = run.cache["blocks.0.resid_post"].shape[-1]
    assert run.cache["blocks.1.resid_post"].shape == (2, 1 + 16, d)
    assert torch.allclose(run.cache["embed"], run.cache["blocks.0.resid_pre"])
    pre, post = run.cache["blocks.0.resid_pre"], run.cache["blocks.0.resid_post"]
    assert torch.allclose(
        pre + run.cache["blocks.0.attn.out"] + run.cache["blocks.0.mlp.out"], post, atol=1e-5
    )
    # class token at position 0: its embedding does not depend on the image
    other = model.run(torch.randn(2, 3, 32, 32), cache="embed").cache["embed"]
    assert torch.allclose(other[:, 0], run.cache["embed"][:, 0])
    assert not torch.allclose(other[:, 1], run.cache["embed"][:, 1])
    with torch.no_grad():
        assert torch.allclose(run.logits, module(x), atol=1e-5)


def test_timm_vit_heads_and_patterns():
    module = _timm_vit()
    model = tv.wrap(module)
    x = torch.randn(2, 3, 32, 32)
    with tv.eager_attention(model):
        run = model.run(x, cache=["blocks.0.attn.pattern", "blocks.0.attn.z"])
    pattern = run.cache["blocks.0.attn.pattern"]
    assert pattern.shape == (2, 3, 17, 17) and torch.allclose(pattern.sum(-1), torch.ones(2, 3, 17))
    assert run.cache["blocks.0.attn.z"].shape == (2, 17, 3, 64)
    assert all(m.fused_attn for m in module.modules() if hasattr(m, "fused_attn"))  # restored
    vis = tv.visualize(model, tv.channel("blocks.1.resid_post", 3, pos=0), steps=4, shape=(1, 3, 32, 32),
                       progress=False)  # fmt: skip
    assert vis.history.shape == (4,)
