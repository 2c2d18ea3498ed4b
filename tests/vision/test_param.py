"""Feature visualisation's image parameterisations (FFT with 1/f scaling, colour decorrelation, pixels) and
its transformation robustness (pad, jitter, scale, rotate), each checked for what it does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import torch_shard_interpret as tsi
import torch_shard_interpret.vision as tv
from torch_shard_interpret.vision._param import _COLOR, colour_sqrt


def _power_slope(images: torch.Tensor) -> float:
    """The slope of log power against log frequency, over images ``[n, h, w]``."""
    power = torch.fft.fft2(images.double()).abs().pow(2).mean(0)
    h, w = power.shape
    f = (torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.fftfreq(w)[None, :] ** 2).sqrt().double()
    keep = f > 2.0 / max(h, w)
    a = torch.stack([f[keep].log(), torch.ones(int(keep.sum()), dtype=torch.float64)], 1)
    return float(torch.linalg.lstsq(a, power[keep].log()[:, None]).solution[0, 0])


def test_fft_images_have_a_one_over_f_spectrum_and_pixels_a_flat_one():
    gen = torch.Generator().manual_seed(0)
    fft = tv.ImageParam((64, 1, 64, 64), param="fft", decorrelate=False, gen=gen)
    pixel = tv.ImageParam((64, 1, 64, 64), param="pixel", gen=gen)
    # amplitude ~ 1/f, so power ~ f^-2, as in natural images; independent pixels are white
    assert -2.2 < _power_slope(fft.linear().detach()[:, 0]) < -1.8
    assert abs(_power_slope(pixel.linear().detach()[:, 0])) < 0.2
    x = fft()
    assert x.shape == (64, 1, 64, 64) and 0 < x.min() and x.max() < 1
    with pytest.raises(tsi.InputError, match="'fft' or 'pixel'"):
        tv.ImageParam((1, 1, 8, 8), param="dct")


def test_colour_matrix_is_measured_on_sklearn_photos_and_correlates_channels_like_them():
    from sklearn.datasets import load_sample_images

    photos = torch.from_numpy(np.concatenate([p.reshape(-1, 3) for p in load_sample_images().images])) / 255.0
    assert torch.allclose(colour_sqrt(photos), _COLOR, atol=1e-3)
    target = torch.corrcoef(photos.double().T)
    gen = torch.Generator().manual_seed(0)
    mixed = tv.ImageParam((32, 3, 32, 32), decorrelate=True, gen=gen).linear().detach()
    plain = tv.ImageParam((32, 3, 32, 32), decorrelate=False, gen=gen).linear().detach()
    corr_mixed = torch.corrcoef(mixed.transpose(0, 1).flatten(1).double())
    corr_plain = torch.corrcoef(plain.transpose(0, 1).flatten(1).double())
    assert torch.allclose(corr_mixed, target, atol=0.05)  # the photos' channels are ~0.9 correlated
    assert torch.allclose(corr_plain, torch.eye(3, dtype=torch.float64), atol=0.05)
    assert tv.ImageParam((1, 1, 8, 8), decorrelate=True).decorrelate is False  # grey images: nothing to mix


def _only(**kw) -> tv.Transforms:
    base = {"pad": 0, "jitter": 0, "scales": (1.0,), "degrees": 0.0, "jitter2": 0}
    return tv.Transforms(**{**base, **kw})


def test_each_transform_does_its_own_thing():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 8, 8, generator=gen)
    assert torch.equal(tv.Transforms.none()(x, gen), x)
    padded = _only(pad=2)(torch.zeros(1, 1, 8, 8), gen)  # padded with 0.5, resized back to 8x8
    assert padded.shape == (1, 1, 8, 8) and padded[0, 0, 0, 0] == 0.5 and padded[0, 0, 4, 4] == 0
    crops = {(i, j): F.interpolate(x[..., i : i + 6, j : j + 6], size=(8, 8), mode="bilinear")
             for i in range(3) for j in range(3)}  # fmt: skip
    seen = set()
    for seed in range(12):
        y = _only(jitter=2)(x, torch.Generator().manual_seed(seed))
        seen |= {k for k, c in crops.items() if torch.allclose(y, c, atol=1e-6)}
    assert len(seen) > 3  # a random 6x6 window each time
    zoom = _only(scales=(2.0,))(x, gen)  # the centre half, enlarged
    centre = F.interpolate(x[..., 2:6, 2:6], size=(8, 8), mode="bilinear", align_corners=False)
    inner = (..., slice(1, 7), slice(1, 7))  # the border rows sample the pixels just outside the centre
    assert torch.allclose(zoom[inner], centre[inner], atol=1e-5) and not torch.allclose(zoom, x, atol=0.05)
    yy, xx = torch.meshgrid(torch.arange(16.0) - 7.5, torch.arange(16.0) - 7.5, indexing="ij")
    blob = torch.exp(-(xx**2 + yy**2) / 18)[None, None]
    bar = (yy.abs() < 2).float()[None, None]
    turn = _only(degrees=45.0)
    g = torch.Generator().manual_seed(3)
    # a round blob survives any rotation (up to bilinear resampling); a bar does not
    assert float((turn(blob, g) - blob).abs().max()) < 0.05
    assert float((turn(bar, torch.Generator().manual_seed(3)) - bar).abs().max()) > 0.5


def test_standard_transforms_scale_lucents_defaults_and_are_seeded():
    assert tv.Transforms.standard(224) == tv.Transforms()
    small = tv.Transforms.standard(32)
    assert (small.pad, small.jitter, small.jitter2, small.degrees) == (2, 1, 1, 10.0)
    x = tv.ImageParam((2, 3, 32, 32), gen=torch.Generator().manual_seed(0))().detach()
    y = small(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and not torch.allclose(x, y)
    assert torch.equal(y, small(x, torch.Generator().manual_seed(1)))
