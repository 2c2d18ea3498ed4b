"""Sparse autoencoders in the SAELens layout (``cfg.json`` + ``sae_weights.safetensors``), as in ``tsi.sae``.

``z = act((x - b_dec) @ W_enc + b_enc)`` (no ``b_dec`` subtraction for transcoders or when
``apply_b_dec_to_input`` is false); ``x_hat = z @ W_dec + b_dec``. Activations: ReLU (``standard``), TopK,
JumpReLU (``threshold`` per latent) and BatchTopK at inference (one threshold). ``attach(sae, site)``
makes the latents a site: the returned intervention caches ``{site}.sae.latents`` and ``{site}.sae.error``
and can replace the activation by the reconstruction.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import JsiError
from ._interventions import Intervention

CFG, WEIGHTS = "cfg.json", "sae_weights.safetensors"
_ARCH = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu", "batchtopk": "jumprelu"}


class SAEError(JsiError):
    """An SAE folder or its use is wrong."""


@dataclass
class SAE:
    W_enc: jax.Array
    b_enc: jax.Array
    W_dec: jax.Array
    b_dec: jax.Array
    kind: str = "relu"
    k: int | None = None
    threshold: jax.Array | None = None
    hook_name: str | None = None
    apply_b_dec_to_input: bool = True
    transcoder: bool = False

    def pre_acts(self, x: jax.Array) -> jax.Array:
        if self.apply_b_dec_to_input and not self.transcoder:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: jax.Array) -> jax.Array:
        pre = self.pre_acts(x)
        if self.kind == "relu":
            return jax.nn.relu(pre)
        if self.kind == "topk":
            vals, idx = jax.lax.top_k(pre, self.k)
            hot = jax.nn.one_hot(idx, pre.shape[-1], dtype=pre.dtype)  # [..., k, d_sae]
            return jnp.einsum("...k,...kd->...d", jax.nn.relu(vals), hot)
        return jax.nn.relu(pre) * (pre > self.threshold)

    def decode(self, z: jax.Array) -> jax.Array:
        return z @ self.W_dec + self.b_dec

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode(x))


def load(path: str | os.PathLike) -> SAE:
    """An SAE saved by ``tsi.sae``, by ``jsi.sae.save`` or by SAELens (standard, topk, jumprelu)."""
    from safetensors.numpy import load_file

    path = Path(path)
    if not (path / CFG).is_file() or not (path / WEIGHTS).is_file():
        raise SAEError(f"{str(path)!r} is not an SAE folder: it needs {CFG} and {WEIGHTS} (SAELens layout)")
    raw = json.loads((path / CFG).read_text())
    w = {k: jnp.asarray(v, jnp.float32) for k, v in load_file(str(path / WEIGHTS)).items()}
    arch = str(raw.get("architecture", "standard")).lower()
    kind = raw.get("kind") if raw.get("tsi_format") else None
    k = raw.get("k") or (raw.get("activation_fn_kwargs") or {}).get("k")
    if kind is None:
        kind = (
            "jumprelu"
            if "jumprelu" in arch
            else "topk"
            if ("topk" in arch or raw.get("activation_fn_str") == "topk")
            else "relu"
        )
    thr = w.get("threshold")
    if kind == "batchtopk" and thr is not None:
        thr = thr.reshape(-1)[0]
    meta = raw.get("metadata") or {}
    return SAE(w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"], kind, k, thr,
               raw.get("hook_name") or meta.get("hook_name"), bool(raw.get("apply_b_dec_to_input", True)),
               bool(raw.get("transcoder")) or "transcoder" in arch)  # fmt: skip


def save(sae: SAE, path: str | os.PathLike) -> Path:
    """Write the SAELens layout atomically (a temporary folder renamed into place)."""
    from safetensors.numpy import save_file

    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SAEError(f"cannot save to {str(path)!r}: the folder {str(parent)!r} does not exist")
    tensors = {
        n: np.ascontiguousarray(np.asarray(getattr(sae, n), np.float32))
        for n in ("W_enc", "b_enc", "W_dec", "b_dec")
    }
    if sae.threshold is not None:
        tensors["threshold"] = np.ascontiguousarray(
            np.broadcast_to(np.asarray(sae.threshold, np.float32), (sae.W_enc.shape[1],))
        )
    cfg = {"d_in": int(sae.W_enc.shape[0]), "d_sae": int(sae.W_enc.shape[1]), "architecture": _ARCH[sae.kind],
           "activation_fn_str": "topk" if sae.kind == "topk" else "relu",
           "activation_fn_kwargs": {"k": sae.k} if sae.kind == "topk" else {}, "k": sae.k,
           "apply_b_dec_to_input": sae.apply_b_dec_to_input, "hook_name": sae.hook_name, "dtype": "float32",
           "metadata": {"hook_name": sae.hook_name}}  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=parent))
    try:
        save_file(tensors, str(tmp / WEIGHTS))
        (tmp / CFG).write_text(json.dumps(cfg, indent=2))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


class Splice(Intervention):
    """At an SAE's site: records ``{site}.{name}.latents`` / ``.error``; ``replace=True`` puts in ``x_hat``
    (plus the error when ``keep_error``), and ``latents=`` an intervention on the latents (e.g. steering)."""

    _data = ("sae_arrays", "latent_edit")
    _meta = ("kind", "k", "apply_b", "name", "replace", "keep_error")

    def __init__(
        self, sae: SAE, name: str = "sae", replace: bool = False, keep_error: bool = True, latents: Any = None
    ):
        super().__init__()
        self.sae_arrays = (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, sae.threshold)
        self.kind, self.k, self.apply_b, self.name = sae.kind, sae.k, sae.apply_b_dec_to_input, name
        self.replace, self.keep_error, self.latent_edit = replace, keep_error, latents

    def _sae(self) -> SAE:
        return SAE(*self.sae_arrays[:4], self.kind, self.k, self.sae_arrays[4], None, self.apply_b)

    def _parts(self, x, ctx):
        from ._interventions import SiteContext

        sae = self._sae()
        z = sae.encode(x)
        if self.latent_edit is not None:
            z = self.latent_edit(z, SiteContext(f"{ctx.name}.{self.name}.latents", ctx.offset))
        return z, x - sae(x), sae.decode(z)

    def records(self, x, ctx) -> dict[str, jax.Array]:
        z, err, _ = self._parts(x, ctx)
        return {f"{ctx.name}.{self.name}.latents": z, f"{ctx.name}.{self.name}.error": err}

    def edit(self, x, ctx):
        if not self.replace and self.latent_edit is None:
            return x
        _, err, x_hat = self._parts(x, ctx)
        return x_hat + err if (self.keep_error or not self.replace) else x_hat


def attach(sae: SAE, site: str | None = None, **kw: Any) -> dict[str, Splice]:
    """``{site: Splice(sae)}`` to merge into ``interventions``; the run's cache then holds the latents."""
    site = site or sae.hook_name
    if not site:
        raise SAEError(
            "this SAE does not name its site (hook_name is empty); pass site='blocks.N.resid_post'"
        )
    return {site: Splice(sae, **kw)}
