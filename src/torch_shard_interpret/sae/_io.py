"""Save and load in the SAELens directory layout: ``cfg.json`` + ``sae_weights.safetensors``.

Tensors: ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_out], ``b_dec`` [d_out],
``threshold`` [d_sae] (JumpReLU, and BatchTopK, which SAELens also saves as JumpReLU) and ``W_skip``
[d_out, d_in] (skip transcoders). See docs/sae.md for
how SAELens cfg.json fields map onto ``SAEConfig``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ._cfgfile import read_cfg
from ._config import SAEConfig, SAEError
from ._header import read_header
from ._sae import SAE, make
from ._saelens import ARCHITECTURES, check_tensors, plan
from ._sites import hook_name_for

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"

SAELENS_VERSION = "6.54.12"
"""Written as ``metadata.sae_lens_version``: the SAELens release whose cfg.json format we write (tested
against it); any version from 6.0 on makes SAELens read the file as a v6 config."""

_ARCH_OUT = {(kind, transcoder, skip): arch for arch, (kind, transcoder, skip) in ARCHITECTURES.items()} | {
    ("batchtopk", False, False): "jumprelu"
}  # SAELens saves a trained BatchTopK SAE as JumpReLU


def saelens_cfg(c: SAEConfig) -> dict[str, Any]:
    """The cfg.json object for ``c``: our fields (``tsi_format``) and SAELens's (v6 ``metadata``, v5 flat)."""
    out: dict[str, Any] = {**c.extra}
    out.update({k: v for k, v in c.to_dict().items() if k != "extra"})
    arch = _ARCH_OUT.get((c.kind, c.transcoder, c.skip))
    if arch is None:  # a TopK or BatchTopK transcoder: SAELens has no such architecture
        arch = f"{c.kind}{'_skip' if c.skip else ''}_transcoder"
    out["architecture"] = arch
    if c.transcoder:
        out["d_out"] = c.out_dim
    if c.kind in ("topk", "abstopk"):
        out["rescale_acts_by_decoder_norm"] = False  # loading folds SAELens's rescaling into the weights
    out["activation_fn_str"] = c.kind if c.kind in ("topk", "abstopk") else "relu"
    out["activation_fn_kwargs"] = {"k": c.k} if c.kind in ("topk", "abstopk") else {}
    meta = c.extra.get("metadata")
    out["metadata"] = {
        **(meta if isinstance(meta, dict) else {}),
        "sae_lens_version": SAELENS_VERSION,
        "model_name": c.model_name,
        "hook_name": hook_name_for(c.hook_name) if c.hook_name else "",
        "hook_name_out": hook_name_for(c.hook_name_out) if c.hook_name_out else None,
    }
    out["tsi_format"] = 1
    return out


def save(sae: SAE, path: str | Path) -> Path:
    """Write the folder ``path`` atomically (a temporary folder renamed into place)."""
    from safetensors.torch import save_file

    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SAEError(
            f"cannot save to {str(path)!r}: the folder {str(parent)!r} does not exist; create it first"
        )
    if path.exists() and not path.is_dir():
        raise SAEError(f"cannot save to {str(path)!r}: it is a file; give a folder path such as 'sae/'")
    c = sae.cfg
    tensors = {n: getattr(sae, n).detach().contiguous().cpu() for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
    thr = sae.threshold_values
    if thr is not None:
        tensors["threshold"] = thr.detach().contiguous().cpu().clone()
    if c.skip:
        tensors["W_skip"] = sae.W_skip.detach().contiguous().cpu()
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=parent))
    try:
        save_file(tensors, str(tmp / WEIGHTS))
        (tmp / CFG).write_text(json.dumps(saelens_cfg(c), indent=2, default=str))
        if path.exists():
            old = parent / f".{path.name}.old{os.getpid()}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load(path: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> SAE:
    """Load an SAE saved by us or by SAELens (standard, topk, abstopk, jumprelu, batchtopk-as-jumprelu,
    transcoders and skip transcoders).

    Nothing is allocated before ``cfg.json`` has been type-checked and its sizes compared with the tensors
    the safetensors header describes (each checked against the file's size); any disagreement is an
    ``SAEError`` naming the file and the field or tensor.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not (path / CFG).is_file() or not (path / WEIGHTS).is_file():
        raise SAEError(f"{str(path)!r} is not an SAE folder: it needs {CFG} and {WEIGHTS} (SAELens layout)")
    raw = read_cfg(path / CFG)
    header = read_header(path / WEIGHTS)
    p = plan(raw, header, str(path / CFG))
    check_tensors(p, header, str(path / WEIGHTS))
    weights: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path / WEIGHTS), framework="pt") as f:
            for name in header:
                weights[name] = f.get_tensor(name)
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise SAEError(f"cannot read {path / WEIGHTS}: {' '.join(str(exc).split())}") from None
    for name, t in weights.items():
        if not bool(torch.isfinite(t).all()):
            raise SAEError(f"{path / WEIGHTS}: {name} holds NaN or infinite values; the file is damaged")
    cfg = p.cfg
    sae = make(cfg, init=False)  # every parameter is overwritten below
    with torch.no_grad():
        for n in ("W_enc", "b_enc", "W_dec", "b_dec", *(("W_skip",) if cfg.skip else ())):
            getattr(sae, n).copy_(weights[n])
        thr = weights.get("threshold")
        if cfg.kind == "jumprelu" and thr is not None:
            sae.log_threshold.copy_(thr.clamp_min(1e-12).log())
        elif cfg.kind == "batchtopk" and thr is not None:
            sae.threshold.copy_(thr.reshape(-1)[0] if thr.numel() else sae.threshold)
        if p.rescale:  # SAELens selects on pre * |W_dec row| and decodes z / |W_dec row|: fold both
            norms = sae.W_dec.norm(dim=-1)
            if not bool((norms > 0).all()):
                raise SAEError(
                    f"{path / WEIGHTS}: W_dec has a zero row, so rescale_acts_by_decoder_norm cannot apply"
                )
            sae.W_enc.mul_(norms)
            sae.b_enc.mul_(norms)
            sae.W_dec.div_(norms[:, None])
        if p.norm_scale is not None:  # SAELens 'expected_average_only_in' with a known factor: fold it in
            sae.W_enc.mul_(p.norm_scale)
            sae.b_dec.div_(p.norm_scale)
            sae.W_dec.div_(p.norm_scale)
            if cfg.skip:
                sae.W_skip.div_(p.norm_scale)
    if device is not None or dtype is not None:
        sae = sae.to(device=device, dtype=dtype)
    return sae.eval()
