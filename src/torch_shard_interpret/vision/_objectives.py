"""Objectives for feature visualisation: what an image should make the model do.

An objective maps the activations at its sites to a score per image (``[batch]``, higher is better).
Objectives add, subtract and scale (``channel(s, 3) - 0.5 * channel(s, 7)``), and ``diversity(site)``
rewards a batch whose images differ (the negative mean cosine similarity of their Gram matrices).

Activations are feature maps ``[batch, C, H, W]`` (CNN sites), token streams ``[batch, pos, d]`` (ViT
sites; ``pos="all"`` averages over positions, an int picks one, e.g. 0 for the class token) or vectors
``[batch, d]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..core._errors import InputError

Acts = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Objective:
    """A score per image from the activations at ``sites``."""

    sites: tuple[str, ...]
    fn: Callable[[Acts], torch.Tensor]
    name: str

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.fn(acts)

    def __add__(self, other: Objective | float) -> Objective:
        if not isinstance(other, Objective):
            return Objective(self.sites, lambda a: self.fn(a) + float(other), f"{self.name} + {other}")
        sites = tuple(dict.fromkeys(self.sites + other.sites))
        return Objective(sites, lambda a: self.fn(a) + other.fn(a), f"{self.name} + {other.name}")

    __radd__ = __add__

    def __mul__(self, k: float) -> Objective:
        return Objective(self.sites, lambda a: float(k) * self.fn(a), f"{k} * {self.name}")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return self * -1.0

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other if isinstance(other, Objective) else -float(other))


def _features(value: torch.Tensor, pos: int | str) -> torch.Tensor:
    """``[batch, d, ...]``: feature dimension second (ViT token streams are moved so)."""
    if value.ndim == 3:  # [batch, pos, d]
        return value.mean(1) if pos == "all" else value[:, int(pos)]
    return value


def channel(site: str, index: int, pos: int | str = "all") -> Objective:
    """The mean activation of channel ``index`` at ``site`` (over space, or over ``pos`` for token streams)."""

    def fn(acts: Acts) -> torch.Tensor:
        v = _features(acts[site], pos)
        if index >= v.shape[1]:
            raise InputError(f"{site} has {v.shape[1]} channels, so there is no channel {index}")
        v = v[:, index]
        return v.flatten(1).mean(1) if v.ndim > 1 else v

    return Objective((site,), fn, f"channel({site}, {index})")


def neuron(site: str, index: int, x: int | None = None, y: int | None = None) -> Objective:
    """Channel ``index`` at one spatial position (default: the centre) of a feature map."""

    def fn(acts: Acts) -> torch.Tensor:
        v = acts[site]
        if v.ndim != 4:
            raise InputError(f"neuron() needs a feature map [batch, C, H, W]; {site} gives {tuple(v.shape)}")
        h, w = v.shape[-2:]
        return v[:, index, h // 2 if y is None else y, w // 2 if x is None else x]

    return Objective((site,), fn, f"neuron({site}, {index})")


def direction_vector(source: Any, index: int | None = None) -> tuple[torch.Tensor, str]:
    """``[d]`` and a label from ``source``: a vector; a matrix and the row ``index``; an SAE and its latent
    ``index`` (its decoder row ``W_dec[index]``); a fitted probe (its ``weights``, row ``index`` for a
    classification probe); or a steering vector (its ``vector``)."""
    if hasattr(source, "W_dec"):  # tsi.sae.SAE (or any object with a decoder matrix [d_sae, d])
        if index is None:
            raise InputError("an SAE direction needs the latent: direction(site, sae, index=latent)")
        return source.W_dec[index].detach().flatten(), f"SAE latent {index}"
    if hasattr(source, "weights") and hasattr(source, "decision"):  # tsi.probes.ProbeResult
        w = source.weights.detach()
        if w.ndim == 2 and index is None and w.shape[0] > 1:
            raise InputError(f"the probe has {w.shape[0]} class rows; pick one with index=")
        row = w if w.ndim == 1 else w[0 if index is None else index]
        return row.flatten(), "probe" if index is None else f"probe class {index}"
    if hasattr(source, "vector") and hasattr(source, "site"):  # tsi.steering.SteeringVector
        return torch.as_tensor(source.vector).detach().flatten(), f"steering vector from {source.site}"
    vec = torch.as_tensor(source).detach()
    if index is not None:
        vec = vec[index]
    elif sum(n > 1 for n in vec.shape) > 1:
        raise InputError(
            f"the direction must be one vector [d], not shape {tuple(vec.shape)}; pick a row with index="
        )
    return vec.flatten(), "vector" if index is None else f"row {index}"


def direction(
    site: str, vector: Any, pos: int | str = "all", cosine: bool = False, index: int | None = None
) -> Objective:
    """The projection of the activations onto a direction ``[d]``, averaged over space: ``vector`` is a tensor
    (``index``: one of its rows), a ``tsi.sae.SAE`` with ``index`` = the latent (its decoder row), a fitted probe
    (``tsi.probes`` result; ``index``: the class row) or a ``SteeringVector``. ``cosine=True`` divides by the
    activation norm."""
    vec, label = direction_vector(vector, index)

    def fn(acts: Acts) -> torch.Tensor:
        v = _features(acts[site], pos)
        if v.shape[1] != vec.numel():
            raise InputError(f"the direction has {vec.numel()} entries but {site} has {v.shape[1]} channels")
        d = vec.to(v)
        shape = (1, -1) + (1,) * (v.ndim - 2)
        dot = (v * d.view(shape)).sum(1)
        if cosine:
            dot = dot / (v.norm(dim=1) * d.norm()).clamp_min(1e-8)
        return dot.flatten(1).mean(1) if dot.ndim > 1 else dot

    return Objective((site,), fn, f"direction({site}, {label})")


def diversity(site: str) -> Objective:
    """Minus the mean cosine similarity between the Gram matrices of different images of the batch."""

    def fn(acts: Acts) -> torch.Tensor:
        v = acts[site]
        b = v.shape[0]
        if b < 2:
            return torch.zeros(b, device=v.device, dtype=v.dtype)
        flat = v.flatten(2) if v.ndim == 4 else v.transpose(1, 2) if v.ndim == 3 else v[:, :, None]
        gram = torch.nn.functional.normalize((flat @ flat.transpose(1, 2)).flatten(1), dim=1)
        sim = gram @ gram.T
        off = (sim.sum(1) - sim.diagonal()) / (b - 1)
        return -off

    return Objective((site,), fn, f"diversity({site})")


def as_objective(spec: Objective | str) -> Objective:
    """An ``Objective``, or ``"site:channel"`` shorthand such as ``"stages.2:5"``."""
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, str) and ":" in spec:
        site, _, idx = spec.rpartition(":")
        if idx.isdigit():
            return channel(site, int(idx))
    raise InputError(
        f"objective must be tsi.vision.channel(...) or the like, or 'site:channel', not {spec!r}"
    )
