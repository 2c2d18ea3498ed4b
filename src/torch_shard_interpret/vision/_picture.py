"""Numpy pictures for pages: an image as RGB in [0, 1], a heat map, and a heat map laid over an image."""

from __future__ import annotations

import numpy as np
import torch


def to_rgb(image: torch.Tensor) -> np.ndarray:
    """``[C, H, W]`` (1 or 3 channels, any range) -> ``[H, W, 3]`` floats in [0, 1], min-max scaled."""
    a = image.detach().float().cpu()
    a = (a - a.min()) / (a.max() - a.min()).clamp_min(1e-12)
    a = a.repeat(3, 1, 1) if a.shape[0] == 1 else a[:3]
    return a.permute(1, 2, 0).numpy()


def heat(values: torch.Tensor) -> np.ndarray:
    """``[H, W]`` -> ``[H, W, 3]``: white at 0, red for positive, blue for negative (scaled by max |value|)."""
    v = values.detach().float().cpu()
    v = (v / v.abs().max().clamp_min(1e-12)).numpy()
    pos, neg = np.clip(v, 0, 1), np.clip(-v, 0, 1)
    r = 1 - neg * 0.8
    g = 1 - np.maximum(pos, neg) * 0.8
    b = 1 - pos * 0.8
    return np.stack([r, g, b], -1)


def overlay(image: torch.Tensor, values: torch.Tensor, alpha: float = 0.6) -> np.ndarray:
    """``values`` ``[h, w]`` (resized to the image by nearest neighbour) over a grey copy of ``image``."""
    rgb = to_rgb(image)
    grey = rgb.mean(-1, keepdims=True).repeat(3, -1)
    h, w = rgb.shape[:2]
    v = values.detach().float().cpu()
    if tuple(v.shape) != (h, w):
        v = torch.nn.functional.interpolate(v[None, None], size=(h, w), mode="nearest")[0, 0]
    hm = heat(v)
    weight = alpha * np.abs(v.numpy() / max(float(v.abs().max()), 1e-12))[..., None]
    return grey * (1 - weight) + hm * weight


def upscale(a: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour upscaling of ``[H, W, 3]`` so the longer side is about ``size`` pixels."""
    k = max(1, size // max(a.shape[:2]))
    return a.repeat(k, 0).repeat(k, 1)
