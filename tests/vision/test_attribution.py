"""Pixel attribution on the embedded digits CNN: shapes, IG completeness, Grad-CAM, occlusion, guided backprop
with functional ReLUs, and the built-in sanity checks."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torch_shard_interpret as tsi
import torch_shard_interpret.vision as tv


def test_embedded_model_is_accurate_and_has_sites(cnn, digits_data):
    images, labels = digits_data
    assert cnn.meta["test_accuracy"] > 0.93
    assert {"stem", "stages.0", "stages.3", "pool", "logits"} <= set(cnn.sites())
    run = cnn.run(images[:4], cache=["stages.*", "layer4.0:output"])
    assert run.cache["stages.3"].shape == (4, 64, 4, 4)
    assert torch.equal(run.cache["stages.3"], run.cache["layer4.0:output"].clamp_min(0))
    assert torch.equal(run.logits, cnn.module(images[:4]))


@pytest.mark.parametrize("baseline", ["black", "blur", "noise"])
def test_integrated_gradients_completeness(cnn, batch, baseline):
    images, labels = batch
    ig = tv.integrated_gradients(cnn, images, target=labels, baseline=baseline, steps=32)
    assert ig.attributions.shape == images.shape
    assert (ig.completeness_error.abs() <= 0.02 * ig.delta.abs() + 1e-3).all()
    few = tv.integrated_gradients(cnn, images, target=labels, baseline=baseline, steps=2)
    assert few.completeness_error.abs().mean() > ig.completeness_error.abs().mean()


def test_saliency_family_shapes_and_relations(cnn, batch):
    images, labels = batch
    sal = tv.saliency(cnn, images, labels, abs=False)
    gxi = tv.gradient_x_input(cnn, images, labels)
    assert torch.allclose(gxi.attributions, sal.attributions * images)
    sg = tv.smoothgrad(cnn, images, labels, samples=8, noise=0.0)
    assert torch.allclose(sg.attributions, sal.attributions, atol=1e-6)
    noisy = tv.smoothgrad(cnn, images, labels, samples=8, noise=0.2)
    assert not torch.allclose(noisy.attributions, sal.attributions)


def test_grad_cam_shapes_and_api(cnn, batch):
    images, _ = batch
    cam = tv.grad_cam(cnn, images, target=3, site="layer4:output")
    assert cam.shape == (6, 8, 8) and (cam.attributions >= 0).all()
    assert torch.allclose(cam, cam.attributions) and torch.equal(cam[0], cam.attributions[0])
    assert float(cam.sum()) == float(cam.attributions.sum()) and len(cam) == 6
    small = tv.grad_cam(cnn, images, target=3, site="stages.3", upsample=False)
    assert small.shape == (6, 4, 4)
    pp = tv.grad_cam_pp(cnn, images, target=3, site="stages.3")
    assert pp.shape == (6, 8, 8) and torch.isfinite(pp.attributions).all()
    with pytest.raises(tsi.TsiError, match="convolutional site"):
        tv.grad_cam(cnn, images, target=3, site="logits")


def test_occlusion_matches_a_direct_loop(cnn, batch):
    images, labels = batch
    occ = tv.occlusion(cnn, images[:2], labels[:2], window=3, stride=2, batch_size=5)
    # the first window alone covers pixel (0, 0)
    x = images[:2].clone()
    x[:, :, 0:3, 0:3] = 0
    with torch.no_grad():
        drop = cnn.module(images[:2]).gather(1, labels[:2, None]) - cnn.module(x).gather(1, labels[:2, None])
    assert torch.allclose(occ.attributions[:, 0, 0, 0], drop[:, 0], atol=1e-5)


def test_occlusion_runs_its_patches_in_batches(cnn, batch):
    images, labels = batch
    sizes = []
    hook = cnn.module.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        tv.occlusion(cnn, images[:2], labels[:2], window=2, stride=1, batch_size=64)
    finally:
        hook.remove()
    # one unoccluded forward, then 49 patches x 2 images in chunks of 32 patches (64 images): 64 + 34
    assert sizes == [2, 64, 34]


class _FunctionalNet(nn.Module):
    def __init__(self, modules: bool):
        super().__init__()
        self.c1, self.c2, self.fc = (
            nn.Conv2d(1, 8, 3, padding=1),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.Linear(8, 10),
        )
        self.act = nn.ReLU() if modules else None

    def forward(self, x):
        act = self.act if self.act is not None else F.relu
        x = act(self.c2(act(self.c1(x))))
        return self.fc(x.mean((2, 3)))


def test_guided_backprop_sees_functional_relu(batch):
    images, _ = batch
    with_modules, functional = _FunctionalNet(True), _FunctionalNet(False)
    functional.load_state_dict(with_modules.state_dict(), strict=False)
    a = tv.guided_backprop(with_modules, images, target=2)
    b = tv.guided_backprop(functional, images, target=2)
    assert a.relu_calls == 2 and b.relu_calls == 2
    assert torch.allclose(a.attributions, b.attributions, atol=1e-6)
    plain = tv.saliency(functional, images, target=2, abs=False)
    assert not torch.allclose(b.attributions, plain.attributions, atol=1e-4)
    assert not any(m._forward_hooks or m._backward_hooks for m in functional.modules())


class _InPlaceNet(_FunctionalNet):
    """The same net with its ReLUs called in place, as statements."""

    def __init__(self, style: str):
        super().__init__(modules=False)
        self.style = style

    def forward(self, x):
        for conv in (self.c1, self.c2):
            x = conv(x)
            if self.style == "tensor":
                x.relu_()
            elif self.style == "functional":
                F.relu(x, inplace=True)
            else:
                torch.relu_(x)
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("style", ["tensor", "functional", "torch"])
def test_guided_backprop_sees_in_place_relu_statements(batch, style):
    images, _ = batch
    reference = _FunctionalNet(True)
    net = _InPlaceNet(style)
    net.load_state_dict(reference.state_dict(), strict=False)
    a = tv.guided_backprop(reference, images, target=2)
    b = tv.guided_backprop(net, images, target=2)
    assert b.relu_calls == 2 and torch.allclose(a.attributions, b.attributions, atol=1e-6)


def _edges(model, images):  # a map that ignores the model entirely
    k = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])[None, None]
    return F.conv2d(images, k, padding=1).abs()


def test_sanity_flags_an_edge_detector_and_passes_saliency(cnn, batch):
    images, labels = batch
    random_labels = tv.load("digits-cnn-random-labels", progress=False)
    edge = tv.custom("edge detector", cnn, images, _edges).sanity(label_model=random_labels)
    assert edge.flagged and edge.final_similarity > 0.99 and edge.label_similarity > 0.99
    sal = tv.saliency(cnn, images, labels).sanity(label_model=random_labels)
    assert not sal.flagged and sal.final_similarity < 0.5 and sal.label_similarity < 0.5
    assert [n for n, _ in sal.cascade][0] == "fc"  # cascading from the output down
    cam = tv.grad_cam(cnn, images, labels, site="stages.3")
    assert not cam.sanity().flagged


def test_results_serialise_and_render(cnn, batch):
    images, labels = batch
    ig = tv.integrated_gradients(cnn, images[:2], labels[:2])
    ig.sanity(max_steps=2)
    d = json.loads(json.dumps(ig.to_dict()))
    assert d["method"] == "integrated_gradients" and len(d["completeness_error"]) == 2
    assert "sanity" in d and len(d["sanity"]["cascade"]) == 2
    html = ig.to_html()
    assert html.count("<img") == 4 and "completeness" in html and "<svg" in html


def test_bad_inputs_raise_one_sentence(cnn):
    with pytest.raises(tsi.InputError, match="float tensor"):
        tv.saliency(cnn, torch.zeros(1, 1, 8, 8, dtype=torch.long))
    with pytest.raises(tsi.InputError, match="one per image"):
        tv.saliency(cnn, torch.zeros(3, 1, 8, 8), target=[1, 2])
    with pytest.raises(tsi.InputError, match="baseline"):
        tv.integrated_gradients(cnn, torch.zeros(1, 1, 8, 8), baseline="grey")
