"""The calls of API.md's vision section, exactly as written there."""

from __future__ import annotations

import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.vision._generators import autoencoder


def test_api_md_vision_calls(digits_data):
    images, _ = digits_data
    images = images[:4]
    model = tsi.vision.load("digits-cnn")
    assert isinstance(model, tsi.Model)
    cam = tsi.vision.grad_cam(model, images, target=3, site="layer4:output")
    assert tuple(cam.shape) == (4, 8, 8)
    ig = tsi.vision.integrated_gradients(model, images, target=3, baseline="black")
    assert ig.attributions.shape == images.shape and ig.completeness_error.shape == (4,)
    vis = tsi.vision.visualize(
        model, tsi.vision.channel("layer3:output", 12), steps=16, seed=0, progress=False
    )
    assert vis.images.shape == (1, 1, 8, 8) and vis.history.shape == (16,)
    board = tsi.vision.checkerboard(autoencoder("deconv-k3s2").decoder, input_shape=(1, 16, 8, 8))
    row = board.layers[0]
    assert (
        row.name == "0"
        and row.flagged
        and torch.is_tensor(row.overlap)
        and set(row.spectral) == {"output", "input_grad"}
    )
