"""SAE: a sparse autoencoder (or transcoder) as a plain ``nn.Module``.

    z     = act((x - b_dec) @ W_enc + b_enc)      # [..., d_sae]   (transcoders: no b_dec subtraction)
    x_hat = z @ W_dec + b_dec                     # [..., d_out]   (skip transcoders: + x @ W_skip.T)

``W_enc`` is ``[d_in, d_sae]`` and ``W_dec`` ``[d_sae, d_out]`` with unit-norm rows, as in SAELens.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ._config import SAEConfig, SAEError
from ._kernels import SparseDecode

if TYPE_CHECKING:
    from ..core._model import Model


def _dtype(name: str) -> torch.dtype:
    value = getattr(torch, str(name).replace("torch.", ""), None)
    if not isinstance(value, torch.dtype):
        raise SAEError(f"unknown dtype {name!r}; use a torch dtype name such as 'float32' or 'bfloat16'")
    return value


class SAE(nn.Module):
    """A sparse autoencoder. ``SAE(cfg)`` or ``SAE(d_in=576, d_sae=4096, kind="topk", k=32)``."""

    log_threshold: nn.Parameter  # jumprelu only
    threshold: torch.Tensor  # batchtopk only (a buffer)
    W_skip: nn.Parameter  # skip transcoders only: [d_out, d_in]

    def __init__(
        self, cfg: SAEConfig | None = None, *, seed: int | None = None, init: bool = True, **kwargs: Any
    ):
        """``init=False`` leaves the parameters uninitialised, for a loader that overwrites them all."""
        super().__init__()
        if cfg is None:
            cfg = SAEConfig(**kwargs)
        elif kwargs:
            cfg = dataclasses.replace(cfg, **kwargs)
        self.cfg = cfg
        dtype = _dtype(cfg.dtype)
        d_in, d_sae, d_out = cfg.d_in, cfg.d_sae, cfg.out_dim
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae, dtype=dtype))
        self.b_enc = nn.Parameter(torch.zeros(d_sae, dtype=dtype))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_out, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(d_out, dtype=dtype))
        if cfg.kind == "jumprelu":
            start = torch.full((d_sae,), float(cfg.jumprelu_init_threshold), dtype=dtype)
            self.log_threshold = nn.Parameter(start.log())
        elif cfg.kind == "batchtopk":
            self.register_buffer("threshold", torch.zeros((), dtype=dtype))
        if cfg.skip:
            if not cfg.transcoder:
                raise SAEError(
                    "skip=True adds x @ W_skip.T to a transcoder's output; set transcoder=True too"
                )
            self.W_skip = nn.Parameter(torch.zeros(d_out, d_in, dtype=dtype))
        if init:
            self.reset_parameters(seed)

    # ---- parameters ---------------------------------------------------------------------------
    @torch.no_grad()
    def reset_parameters(self, seed: int | None = None) -> None:
        """Random unit-norm decoder rows and the tied encoder ``W_enc = W_dec.T`` (Conerly et al. 2024)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        w = torch.randn(self.cfg.d_sae, self.cfg.out_dim, generator=gen, dtype=torch.float32)
        w /= w.norm(dim=-1, keepdim=True)
        self.W_dec.copy_(w)
        if self.cfg.transcoder:
            w = torch.randn(self.cfg.d_sae, self.cfg.d_in, generator=gen) / self.cfg.d_in**0.5
            self.W_enc.copy_(w.t())
        else:
            self.W_enc.copy_(w.t())
        self.b_enc.zero_()
        self.b_dec.zero_()

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder row to unit norm (the constraint kept after each optimizer step)."""
        self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the gradient component parallel to each (unit) decoder row, so steps keep the norm."""
        g = self.W_dec.grad
        if g is not None:
            w = self.W_dec
            dots = torch.bmm(g.unsqueeze(1), w.unsqueeze(2)).squeeze(2)  # [d_sae, 1], no [d_sae, d] temporary
            g.addcmul_(dots, w, value=-1.0)

    @property
    def threshold_values(self) -> torch.Tensor | None:
        """Per-latent thresholds ``[d_sae]`` (``jumprelu``, ``batchtopk``), else None."""
        if self.cfg.kind == "jumprelu":
            return self.log_threshold.exp()
        if self.cfg.kind == "batchtopk":
            return self.threshold.expand(self.cfg.d_sae)
        return None

    @property
    def _k(self) -> int:
        k = self.cfg.k
        assert k is not None  # SAEConfig requires k for topk, batchtopk and abstopk
        return k

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    # ---- forward ------------------------------------------------------------------------------
    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder pre-activations ``[..., d_sae]``."""
        x = self._check(x, self.cfg.d_in, "encode")
        if self.cfg.apply_b_dec_to_input and not self.cfg.transcoder:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents ``[..., d_sae]`` (dense, mostly zeros) for activations ``[..., d_in]``."""
        pre = self.pre_acts(x)
        kind = self.cfg.kind
        if kind == "relu":
            return F.relu(pre)
        if kind == "topk":
            vals, idx = pre.topk(self._k, dim=-1, sorted=False)
            return torch.zeros_like(pre).scatter_(-1, idx, vals.relu())
        if kind == "abstopk":  # the k largest |pre|, signs kept
            idx = pre.abs().topk(self._k, dim=-1, sorted=False).indices
            return torch.zeros_like(pre).scatter_(-1, idx, pre.gather(-1, idx))
        thr = self.threshold_values
        assert thr is not None  # jumprelu and batchtopk
        return F.relu(pre) * (pre > thr)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``[..., d_out]`` of latents ``[..., d_sae]``."""
        latents = self._check(latents, self.cfg.d_sae, "decode")
        return latents @ self.W_dec + self.b_dec

    def skip_out(self, x: torch.Tensor) -> torch.Tensor | None:
        """The skip term ``x @ W_skip.T`` ``[..., d_out]`` of a skip transcoder, else None."""
        if not self.cfg.skip:
            return None
        return self._check(x, self.cfg.d_in, "encode") @ self.W_skip.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``decode(encode(x))`` (plus ``skip_out(x)``); TopK decodes sparsely (no dense ``[..., d_sae]``)."""
        if self.cfg.kind != "topk":
            out = self.decode(self.encode(x))
        else:
            pre = self.pre_acts(x)
            k = self._k
            vals, idx = pre.topk(k, dim=-1, sorted=False)
            flat = SparseDecode.apply(vals.relu().reshape(-1, k), idx.reshape(-1, k), self.W_dec)
            out = flat.reshape(*pre.shape[:-1], -1) + self.b_dec
        skip = self.skip_out(x)
        return out if skip is None else out + skip

    def _check(self, x: torch.Tensor, width: int, what: str) -> torch.Tensor:
        if not torch.is_tensor(x) or x.ndim == 0 or x.shape[-1] != width:
            shape = list(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise SAEError(f"{what} expects a tensor [..., {width}], not {shape}")
        return x.to(self.W_enc.dtype)

    # ---- models and files ---------------------------------------------------------------------
    def attach(self, model: Model, site: str | None = None, name: str = "sae") -> list[str]:
        """Add the sites ``{site}.{name}.latents`` and ``{site}.{name}.error`` to ``model``."""
        from ._attach import attach

        return attach(model, self, site=site, name=name)

    def detach(self, model: Model, site: str | None = None, name: str = "sae") -> None:
        from ._attach import detach

        detach(model, self, site=site, name=name)

    def save(self, path: str | Path) -> Path:
        """Write ``cfg.json`` and ``sae_weights.safetensors`` (SAELens layout) into the folder ``path``."""
        from ._io import save

        return save(self, path)

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> SAE:
        from ._io import load

        return load(path, **kwargs)

    def extra_repr(self) -> str:
        c = self.cfg
        k = f", k={c.k}" if c.kind in ("topk", "batchtopk", "abstopk") else ""
        site = f", site={c.hook_name!r}" if c.hook_name else ""
        return f"kind={c.kind!r}, d_in={c.d_in}, d_sae={c.d_sae}{k}{site}"


class Transcoder(SAE):
    """An SAE that reads one site and predicts another (e.g. MLP input -> MLP output)."""

    def __init__(
        self, cfg: SAEConfig | None = None, *, seed: int | None = None, init: bool = True, **kwargs: Any
    ):
        kwargs.setdefault("transcoder", True)
        kwargs.setdefault("apply_b_dec_to_input", False)
        if cfg is not None:
            cfg = dataclasses.replace(cfg, transcoder=True, apply_b_dec_to_input=False)
        super().__init__(cfg, seed=seed, init=init, **kwargs)


def make(cfg: SAEConfig, seed: int | None = None, init: bool = True) -> SAE:
    return (Transcoder if cfg.transcoder else SAE)(cfg, seed=seed, init=init)
