"""Ground truth for the checkerboard diagnosis: three small autoencoders trained on the digits (upsampled to
16x16), identical except for how the decoder upsamples its ``[16, 8, 8]`` code to ``16 x 16``:

- ``"deconv-k3s2"``: ``ConvTranspose2d(kernel 3, stride 2)`` — uneven overlap, must be flagged;
- ``"deconv-k4s2"``: ``ConvTranspose2d(kernel 4, stride 2)`` — even overlap, must not;
- ``"resize-conv"``: nearest upsampling then a 3x3 stride-1 conv — must not.

Each trains in about a second on one core (fixed seed) and is cached under ``<cache>/vision/ae-<kind>/``.
``checkerboard(decoder, input_shape=(1, 16, 8, 8))`` is the check.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn

from .._io import atomic_path, atomic_write
from ..core._errors import InputError
from ._data import cache_root, digits

KINDS = ("deconv-k3s2", "deconv-k4s2", "resize-conv")
FORMAT_VERSION = 1


def _upsampler(kind: str) -> nn.Module:
    if kind == "deconv-k3s2":
        return nn.ConvTranspose2d(16, 16, 3, stride=2, padding=1, output_padding=1)
    if kind == "deconv-k4s2":
        return nn.ConvTranspose2d(16, 16, 4, stride=2, padding=1)
    if kind == "resize-conv":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(16, 16, 3, padding=1))
    raise InputError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")


class AutoEncoder(nn.Module):
    """``encoder``: 16x16 image -> [16, 8, 8] code (conv + average pool); ``decoder``: code -> 16x16 image."""

    def __init__(self, kind: str):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2))
        self.decoder = nn.Sequential(_upsampler(kind), nn.ReLU(), nn.Conv2d(16, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def images16() -> torch.Tensor:
    """The digits upsampled bilinearly to ``[1797, 1, 16, 16]``."""
    return F.interpolate(digits()[0], size=(16, 16), mode="bilinear", align_corners=False)


def train_autoencoder(kind: str, steps: int = 300, seed: int = 0) -> tuple[AutoEncoder, dict]:
    x = images16()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = AutoEncoder(kind)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        loss = F.mse_loss(model(x[idx]), x[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        mse = F.mse_loss(model(x), x).item()
    return model, {"format": FORMAT_VERSION, "kind": kind, "steps": steps, "seed": seed, "mse": mse}


def autoencoder(kind: str) -> AutoEncoder:
    """The trained autoencoder of ``kind`` (from the cache, else trained and cached)."""
    from safetensors.torch import load_file, save_file

    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    folder = cache_root() / "vision" / f"ae-{kind}"
    weights, meta = folder / "model.safetensors", folder / "meta.json"
    if weights.exists() and meta.exists() and json.loads(meta.read_text()).get("format") == FORMAT_VERSION:
        model = AutoEncoder(kind)
        model.load_state_dict(load_file(weights))
        object.__setattr__(model, "meta", json.loads(meta.read_text()))
        return model.eval()
    model, info = train_autoencoder(kind)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(weights) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    atomic_write(meta, json.dumps(info, indent=2))
    object.__setattr__(model, "meta", info)
    return model
