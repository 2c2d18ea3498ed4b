"""Checkerboard diagnosis: the arithmetic of overlaps, and the ground truth of three trained autoencoders."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import torch_shard_interpret as tsi
import torch_shard_interpret.vision as tv
from torch_shard_interpret.vision._generators import KINDS, autoencoder, images16


@pytest.mark.parametrize("k,s,even", [(3, 2, False), (4, 2, True), (2, 2, True), (5, 2, False), (6, 3, True)])
def test_overlap_is_even_iff_kernel_divisible_by_stride(k, s, even):
    m = tv.overlap_map((k, k), (s, s))
    assert (float(m.std()) < 1e-12) == even


def test_stride_share_sees_a_checkerboard():
    board = torch.tensor([[(i + j) % 2 for j in range(16)] for i in range(16)], dtype=torch.float64)
    smooth = torch.cos(torch.arange(16) * 2 * torch.pi / 16)[:, None].repeat(1, 16).double()
    assert tv.stride_share(board + 0.1 * smooth, (2, 2)) > 50
    assert tv.stride_share(smooth, (2, 2)) < 1


@pytest.fixture(scope="module")
def diagnoses():
    return {k: tv.checkerboard(autoencoder(k).decoder, input_shape=(1, 16, 8, 8)) for k in KINDS}


def test_ground_truth_generators_are_told_apart(diagnoses):
    k3 = diagnoses["deconv-k3s2"]
    assert k3.flagged == ["0"] and k3.layers[0].kind == "conv_transpose"
    assert "resize-convolution" in k3.layers[0].fix
    assert k3.layers[0].overlap_cv > 0.3 and k3.layers[0].spectral["output"] > tv.checkerboard_threshold
    k4 = diagnoses["deconv-k4s2"]
    assert k4.flagged == [] and k4.layers[0].overlap_cv == 0 and k4.layers[0].fix is None
    assert k3.layers[0].spectral["output"] > 2 * k4.layers[0].spectral["output"]
    resize = diagnoses["resize-conv"]
    assert resize.layers == [] and resize.flagged == []
    variance = float(images16().var())
    for kind in KINDS:  # each is a trained autoencoder, not an untrained stand-in
        assert autoencoder(kind).meta["mse"] < 0.01 * variance


def test_real_codes_as_inputs_tell_the_decoders_apart():
    x = images16()[:256]
    rows = {}
    for kind in ("deconv-k3s2", "deconv-k4s2"):
        ae = autoencoder(kind)
        with torch.no_grad():
            codes = ae.encoder(x)
        rows[kind] = tv.checkerboard(ae.decoder, inputs=codes)
    assert rows["deconv-k3s2"].flagged == ["0"] and rows["deconv-k4s2"].flagged == []
    k3, k4 = (rows[k].layers[0].spectral["output"] for k in ("deconv-k3s2", "deconv-k4s2"))
    assert k3 > 2 * k4
    assert rows["deconv-k3s2"].input_shape == (1, 16, 8, 8)
    with pytest.raises(tsi.InputError, match="float tensor"):
        tv.checkerboard(autoencoder("deconv-k3s2").decoder, inputs=torch.zeros(4, 16, 8, dtype=torch.long))


def test_strided_conv_gradients_and_rendering(cnn, diagnoses):
    res = tv.checkerboard(cnn, input_shape=(1, 1, 8, 8))
    (row,) = res.layers
    assert row.name == "layer3.0" and row.kind == "strided_conv" and row.flagged
    assert row.spectral["input_grad"] > row.spectral["output"]
    d = json.loads(json.dumps(res.to_dict()))
    assert d["flagged"] == ["layer3.0"]
    html = diagnoses["deconv-k3s2"].to_html()
    assert "resize-convolution" in html and "<img" in html
    assert "nothing can paint" in diagnoses["resize-conv"].to_html()
    plain = tv.checkerboard(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1)), input_shape=(1, 1, 8, 8))
    assert plain.layers == []
