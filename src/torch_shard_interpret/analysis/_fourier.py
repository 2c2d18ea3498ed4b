"""Fourier analysis of a model of modular arithmetic (Nanda et al. 2023): its key frequencies.

A network that has grokked ``a + b mod p`` embeds each number ``a`` as ``cos(w_k a), sin(w_k a)`` for a
few key frequencies ``w_k = 2 pi k / p``: in the Fourier basis over ``Z_p`` its embedding matrix is sparse.
``fourier_spectrum`` reads the token embeddings from the model's ``embed`` site (position 0, tokens
``0..p-1``, centred over tokens so that the position embedding drops out) and returns the energy per
frequency ``k = 1 .. (p-1)/2``; ``fourier_key_frequencies`` keeps the frequencies above the largest gap in
the sorted spectrum (so the cut comes from the spectrum itself, not from a target fraction).
"""

from __future__ import annotations

import math

import torch

from ..core._errors import InputError


def fourier_basis(p: int) -> torch.Tensor:
    """``[p, p]`` orthonormal rows: the constant, then ``cos(2 pi k a / p)``, ``sin(...)`` for ``k = 1..``."""
    a = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, (p - 1) // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * a / p), torch.sin(2 * math.pi * k * a / p)]
    basis = torch.stack(rows)
    return basis / basis.norm(dim=1, keepdim=True)


def token_embeddings(model, p: int, site: str = "embed") -> torch.Tensor:
    """``[p, d_model]`` the ``site`` (default ``embed``) at position 0 for tokens ``0..p-1``, centred over tokens."""
    ids = torch.arange(p).view(p, 1)
    emb = model.run(ids, cache=site).cache[site][:, 0].double().cpu()
    return emb - emb.mean(0)


def _infer_p(model, p: int | None) -> int:
    if p is not None:
        return int(p)
    vocab = int(model.run(torch.zeros(1, 1, dtype=torch.long)).logits.shape[-1])
    if vocab < 3:
        raise InputError(f"a vocabulary of {vocab} tokens cannot hold a modulus; pass p=")
    return vocab - 1  # the numbers 0..p-1 and one "=" token


def fourier_spectrum(model, p: int | None = None, site: str = "embed") -> torch.Tensor:
    """``[(p-1)//2]`` fraction of the (centred) embedding variance in each frequency ``k = 1..(p-1)//2``."""
    p = _infer_p(model, p)
    emb = token_embeddings(model, p, site)  # [p, d]
    coef = fourier_basis(p) @ emb  # [p, d]
    energy = coef[1:].pow(2).sum(-1).view(-1, 2).sum(-1)  # cos + sin of each frequency
    return (energy / energy.sum().clamp_min(1e-30)).float()


def fourier_key_frequencies(
    model, p: int | None = None, max_keys: int | None = None, site: str = "embed"
) -> list[int]:
    """The key frequencies ``k`` (ascending) of a modular-addition model, found from its embeddings.

    ``p``: the modulus (default: the vocabulary size minus one, the ``=`` token). ``max_keys``: the most
    frequencies the cut may keep (default half of them). ``site``: where the embeddings are read."""
    spec = fourier_spectrum(model, p, site)
    n = len(spec)
    limit = max(1, min(n - 1, max_keys if max_keys is not None else max(1, n // 2)))
    order = spec.argsort(descending=True)
    vals = spec[order].clamp_min(1e-12)
    ratios = vals[:limit] / vals[1 : limit + 1]
    cut = int(ratios.argmax()) + 1
    return sorted(int(k) + 1 for k in order[:cut])


def variance_explained(model, keys: list[int], p: int | None = None, site: str = "embed") -> float:
    """Fraction of the centred embedding variance that the frequencies ``keys`` hold."""
    spec = fourier_spectrum(model, p, site)
    return float(sum(spec[k - 1] for k in keys))


def project_onto(keys: list[int], p: int, table: torch.Tensor) -> torch.Tensor:
    """``table`` ``[p, d]`` with every frequency but ``keys`` (and the constant) removed."""
    basis = fourier_basis(p).to(table.device)
    keep = [0] + [r for k in keys for r in (2 * k - 1, 2 * k)]
    b = basis[keep]
    return (b.T @ (b @ table.double())).to(table.dtype)
