"""Save and load in the SAELens directory layout: ``cfg.json`` + ``sae_weights.safetensors``.

Tensors: ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_out], ``b_dec`` [d_out] and
``threshold`` [d_sae] (JumpReLU, and BatchTopK, which SAELens also saves as JumpReLU). See docs/sae.md for
how SAELens cfg.json fields map onto ``SAEConfig``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ._config import SAEConfig, SAEError
from ._sae import SAE, make

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"

_ARCH_OUT = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu", "batchtopk": "jumprelu"}
_OURS = {f for f in SAEConfig.__dataclass_fields__ if f != "extra"}


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
    cfg: dict[str, Any] = {**c.extra}
    cfg.update({k: v for k, v in c.to_dict().items() if k != "extra"})
    # SAELens (v5 flat and v6 nested) names, so its loaders read our folders too
    cfg["architecture"] = _ARCH_OUT[c.kind]
    if c.transcoder:
        cfg["architecture"] = "transcoder" if c.kind == "relu" else f"{_ARCH_OUT[c.kind]}_transcoder"
    cfg["activation_fn_str"] = "topk" if c.kind == "topk" else "relu"
    cfg["activation_fn_kwargs"] = {"k": c.k} if c.kind == "topk" else {}
    cfg["metadata"] = {"model_name": c.model_name, "hook_name": c.hook_name, "hook_name_out": c.hook_name_out}
    cfg["tsi_format"] = 1
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=parent))
    try:
        save_file(tensors, str(tmp / WEIGHTS))
        (tmp / CFG).write_text(json.dumps(cfg, indent=2, default=str))
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
    """Load an SAE saved by us or by SAELens (standard, topk, jumprelu, batchtopk-as-jumprelu, transcoders)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / CFG).is_file() or not (path / WEIGHTS).is_file():
        raise SAEError(f"{str(path)!r} is not an SAE folder: it needs {CFG} and {WEIGHTS} (SAELens layout)")
    try:
        raw = json.loads((path / CFG).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SAEError(f"cannot read {path / CFG}: {exc}") from None
    weights = load_file(str(path / WEIGHTS))
    cfg, scale = config_from_saelens(raw, weights)
    sae = make(cfg)
    missing = [n for n in ("W_enc", "b_enc", "W_dec", "b_dec") if n not in weights]
    if missing:
        raise SAEError(f"{path / WEIGHTS} lacks {', '.join(missing)}")
    with torch.no_grad():
        for n in ("W_enc", "b_enc", "W_dec", "b_dec"):
            t = weights[n]
            if tuple(t.shape) != tuple(getattr(sae, n).shape):
                raise SAEError(
                    f"{n} has shape {list(t.shape)} but cfg.json implies {list(getattr(sae, n).shape)}"
                )
            getattr(sae, n).copy_(t)
        thr = weights.get("threshold")
        if cfg.kind == "jumprelu":
            sae.log_threshold.copy_(thr.clamp_min(1e-12).log() if thr is not None else sae.log_threshold)
        elif cfg.kind == "batchtopk" and thr is not None:
            sae.threshold.copy_(thr.reshape(-1)[0])
        if scale is not None:  # SAELens 'expected_average_only_in' with a known factor: fold it in
            sae.W_enc.mul_(scale)
            sae.b_dec.div_(scale)
            sae.W_dec.div_(scale)
    if device is not None or dtype is not None:
        sae = sae.to(device=device, dtype=dtype)
    return sae.eval()


def config_from_saelens(
    raw: dict[str, Any], weights: dict[str, torch.Tensor] | None = None
) -> tuple[SAEConfig, float | None]:
    """Our ``SAEConfig`` from a SAELens (or our own) ``cfg.json`` dict; also the norm scaling factor to fold."""
    meta = raw.get("metadata") or {}
    get = lambda key: raw.get(key, meta.get(key))  # noqa: E731 - v6 moved hook/model names to metadata
    arch = str(raw.get("architecture", "standard")).lower()
    if "gated" in arch:
        raise SAEError(
            "gated SAEs are not supported (architecture 'gated'); use standard, topk, jumprelu or batchtopk"
        )
    transcoder = (
        bool(raw.get("transcoder")) or "transcoder" in arch or raw.get("d_out") not in (None, raw.get("d_in"))
    )
    kind = raw.get("kind") if raw.get("tsi_format") else None
    act = str(raw.get("activation_fn_str") or raw.get("activation_fn") or "relu").lower()
    k = raw.get("k") or (raw.get("activation_fn_kwargs") or {}).get("k")
    if kind is None:
        if "jumprelu" in arch:
            kind = "jumprelu"
        elif "batchtopk" in arch:
            kind = "batchtopk"
        elif "topk" in arch or act == "topk":
            kind = "topk"
        elif arch in ("standard", "transcoder", "") or act == "relu":
            kind = "relu"
        else:
            raise SAEError(
                f"unsupported SAE architecture {arch!r}; supported: standard, topk, batchtopk, jumprelu (gated is not)"
            )
    if "d_in" not in raw or "d_sae" not in raw:
        raise SAEError("cfg.json needs d_in and d_sae")
    norm = str(raw.get("normalize_activations") or "none")
    scale = None
    if norm == "expected_average_only_in":
        factor = raw.get("norm_scaling_factor") or raw.get("scaling_factor")
        if factor is None:
            raise SAEError(
                "this SAE expects inputs scaled by a norm_scaling_factor (normalize_activations="
                "'expected_average_only_in') but cfg.json does not give it; add \"norm_scaling_factor\": <value>"
            )
        scale = float(factor)
        norm = "none"
    elif norm not in ("none", "None"):
        raise SAEError(
            f"normalize_activations={norm!r} is not supported (only 'none' and 'expected_average_only_in')"
        )
    d_in, d_sae = int(raw["d_in"]), int(raw["d_sae"])
    fields: dict[str, Any] = dict(
        d_in=d_in,
        d_sae=d_sae,
        kind=kind,
        k=int(k) if k is not None else (None if kind not in ("topk", "batchtopk") else 32),
        transcoder=transcoder,
        d_out=int(raw["d_out"]) if raw.get("d_out") is not None else None,
        hook_name=get("hook_name") or get("hook_point"),
        hook_name_out=get("hook_name_out"),
        model_name=get("model_name"),
        dtype=str(raw.get("dtype") or "float32").replace("torch.", ""),
        apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", not transcoder)),
        normalize_activations="none" if norm in ("None",) else norm,
    )
    if kind == "batchtopk" and fields["k"] is None:
        fields["k"] = 32
    for key in (
        "l1_coefficient",
        "l0_coefficient",
        "jumprelu_bandwidth",
        "jumprelu_init_threshold",
        "aux_k",
        "aux_coefficient",
    ):
        if raw.get(key) is not None:
            fields[key] = raw[key]
    extra = {key: v for key, v in raw.items() if key not in _OURS}
    if (
        weights is not None
        and "W_dec" in weights
        and fields["d_out"] is None
        and weights["W_dec"].shape[1] != d_in
    ):
        fields["d_out"], fields["transcoder"] = int(weights["W_dec"].shape[1]), True
    if not math.isfinite(d_in):
        raise SAEError("bad d_in")
    return SAEConfig(**fields, extra=extra), scale
