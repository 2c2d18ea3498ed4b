"""Parity with captum (installed by the `vision-test` extra) on the same model and inputs."""

from __future__ import annotations

import pytest
import torch
from captum.attr import GuidedBackprop, IntegratedGradients, LayerGradCam, Occlusion, Saliency

import torch_shard_interpret.vision as tv

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # captum warns that it sets requires_grad


def test_saliency_and_integrated_gradients_match_captum(cnn, batch):
    images, labels = batch
    ours = tv.saliency(cnn, images, labels)
    theirs = Saliency(cnn.module).attribute(images, target=labels, abs=True)
    assert torch.allclose(ours.attributions, theirs, atol=1e-6)
    ig = tv.integrated_gradients(cnn, images, labels, baseline="black", steps=32)
    ref = IntegratedGradients(cnn.module).attribute(
        images, baselines=torch.zeros_like(images), target=labels, n_steps=32, method="gausslegendre"
    )
    assert torch.allclose(ig.attributions, ref, atol=1e-5, rtol=1e-4)


def test_grad_cam_matches_captum_with_relu(cnn, batch):
    images, labels = batch
    ours = tv.grad_cam(cnn, images, labels, site="layer4:output", upsample=False)
    theirs = LayerGradCam(cnn.module, cnn.module.layer4).attribute(
        images, target=labels, relu_attributions=True
    )
    assert torch.allclose(ours.attributions, theirs[:, 0], atol=1e-5)


def test_occlusion_matches_captum(cnn, batch):
    images, labels = batch
    ours = tv.occlusion(cnn, images, labels, window=3, stride=1)
    theirs = Occlusion(cnn.module).attribute(
        images, sliding_window_shapes=(1, 3, 3), strides=(1, 1, 1), baselines=0.0, target=labels
    )
    assert torch.allclose(ours.attributions, theirs, atol=1e-5)


def test_guided_backprop_matches_captum_on_relu_modules(cnn, batch):
    images, labels = batch
    ours = tv.guided_backprop(cnn, images, labels)
    theirs = GuidedBackprop(cnn.module).attribute(images, target=labels)
    assert torch.allclose(ours.attributions, theirs, atol=1e-6)
