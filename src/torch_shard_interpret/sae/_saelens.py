"""SAELens ``cfg.json`` fields -> our ``SAEConfig``, and the tensors (names, shapes) the file must then hold.

Architectures are matched by their exact SAELens names (``standard``, ``topk``, ``abstopk``, ``jumprelu``,
``transcoder``, ``skip_transcoder``, ``jumprelu_transcoder``...); v5 files say ``standard`` with
``activation_fn_str: topk`` for TopK. Our own files (``tsi_format``) carry ``kind`` and ``transcoder``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._config import SAEConfig, SAEError
from ._header import TensorInfo

ARCHITECTURES: dict[str, tuple[str, bool, bool]] = {
    "standard": ("relu", False, False),
    "topk": ("topk", False, False),
    "abstopk": ("abstopk", False, False),
    "batchtopk": ("batchtopk", False, False),
    "jumprelu": ("jumprelu", False, False),
    "transcoder": ("relu", True, False),
    "skip_transcoder": ("relu", True, True),
    "topk_transcoder": ("topk", True, False),
    "jumprelu_transcoder": ("jumprelu", True, False),
    "jumprelu_skip_transcoder": ("jumprelu", True, True),
}
"""SAELens architecture name -> (our kind, transcoder, skip)."""

RESCALED = ("topk", "abstopk")
"""Kinds whose SAELens config has ``rescale_acts_by_decoder_norm`` (other architectures ignore the field)."""

_TRAINING_FIELDS = (
    "l1_coefficient",
    "l0_coefficient",
    "jumprelu_bandwidth",
    "jumprelu_init_threshold",
    "aux_k",
    "aux_coefficient",
)


@dataclass(frozen=True)
class Plan:
    """What loading a folder will build: the config, the tensors it needs, and what to fold in."""

    cfg: SAEConfig
    tensors: dict[str, tuple[tuple[int, ...], ...]]
    """Each tensor name -> the shapes it may have (the first is the one the SAE uses)."""
    optional: frozenset[str]
    """Names in ``tensors`` the file may lack."""
    norm_scale: float | None
    """``expected_average_only_in`` factor to fold into the weights (None: none)."""
    rescale: bool
    """Fold the decoder row norms into the encoder (``rescale_acts_by_decoder_norm``)."""


def plan(raw: dict[str, Any], header: dict[str, TensorInfo], where: str) -> Plan:
    """The ``Plan`` for the checked cfg.json object ``raw`` (of the file ``where``) and the weights' header."""
    meta = raw.get("metadata") or {}

    def get(key: str) -> Any:  # v6 moved hook and model names to metadata
        value = raw.get(key)
        return meta.get(key) if value is None else value

    kind, transcoder, skip = _architecture(raw, where)
    kwargs = raw.get("activation_fn_kwargs") or {}
    k = raw.get("k") if raw.get("k") is not None else kwargs.get("k")
    d_in, d_sae = raw["d_in"], raw["d_sae"]
    d_out = raw.get("d_out")
    if d_out is None and "W_dec" in header and len(header["W_dec"].shape) == 2:
        width = header["W_dec"].shape[1]
        if width != d_in:  # a transcoder whose cfg.json does not say d_out
            d_out, transcoder = width, True
    transcoder = transcoder or (d_out is not None and d_out != d_in)
    norm, scale = _normalization(raw, where)
    if kind in ("topk", "abstopk", "batchtopk") and k is None:
        if kind != "batchtopk":
            raise SAEError(f"{where}: a {kind} SAE needs the field 'k' (active latents per token)")
        k = 32
    fields: dict[str, Any] = dict(
        d_in=d_in,
        d_sae=d_sae,
        kind=kind,
        k=k,
        transcoder=transcoder,
        skip=skip,
        d_out=d_out,
        hook_name=get("hook_name") or get("hook_point") or None,
        hook_name_out=get("hook_name_out") or None,
        model_name=get("model_name"),
        dtype=str(raw.get("dtype") or "float32").replace("torch.", ""),
        apply_b_dec_to_input=raw.get("apply_b_dec_to_input", not transcoder),
        normalize_activations=norm,
    )
    fields.update({key: raw[key] for key in _TRAINING_FIELDS if raw.get(key) is not None})
    ours = set(SAEConfig.__dataclass_fields__) - {"extra"}
    extra = {key: v for key, v in raw.items() if key not in ours}
    try:
        cfg = SAEConfig(**fields, extra=extra)
    except SAEError as exc:
        raise SAEError(f"{where}: {exc}") from None
    except TypeError as exc:  # a training field of the wrong type
        raise SAEError(f"{where}: a field has the wrong type ({exc})") from None
    _check_dtype(cfg.dtype, where)
    rescale = bool(raw.get("rescale_acts_by_decoder_norm")) and kind in RESCALED
    return Plan(cfg, _tensors(cfg), _optional(cfg), scale, rescale)


def _architecture(raw: dict[str, Any], where: str) -> tuple[str, bool, bool]:
    if raw.get("tsi_format"):
        kind = raw.get("kind") or "topk"
        return kind, bool(raw.get("transcoder")), bool(raw.get("skip"))
    arch = raw.get("architecture") or "standard"
    if arch == "gated":
        raise SAEError(
            f"{where}: gated SAEs are not supported (architecture 'gated'); use standard, topk, abstopk, "
            "jumprelu or batchtopk"
        )
    if arch not in ARCHITECTURES:
        raise SAEError(
            f"{where}: unsupported SAE architecture {arch!r}; supported: {', '.join(ARCHITECTURES)}"
        )
    kind, transcoder, skip = ARCHITECTURES[arch]
    act = raw.get("activation_fn_str") or raw.get("activation_fn")
    if arch == "standard" and act is not None and act not in ("relu", "topk"):
        raise SAEError(f"{where}: activation function {act!r} is not supported; use 'relu' or 'topk'")
    if arch == "standard" and act == "topk":  # SAELens v5 TopK
        kind = "topk"
    return kind, transcoder or bool(raw.get("transcoder")), skip


def _normalization(raw: dict[str, Any], where: str) -> tuple[str, float | None]:
    norm = raw.get("normalize_activations") or "none"
    if norm in ("none", "None"):
        return "none", None
    if norm == "expected_average_only_in":
        factor = raw.get("norm_scaling_factor") or raw.get("scaling_factor")
        if factor is None:
            raise SAEError(
                f"{where}: this SAE expects inputs scaled by a norm_scaling_factor (normalize_activations="
                "'expected_average_only_in') but does not give it; add \"norm_scaling_factor\": <value>"
            )
        return "none", float(factor)
    raise SAEError(
        f"{where}: normalize_activations={norm!r} is not supported (only 'none' and 'expected_average_only_in')"
    )


def _check_dtype(name: str, where: str) -> None:
    import torch

    if not isinstance(getattr(torch, name, None), torch.dtype) or not getattr(torch, name).is_floating_point:
        raise SAEError(f"{where}: field 'dtype' is {name!r}; use a floating torch dtype such as 'float32'")


def _tensors(cfg: SAEConfig) -> dict[str, tuple[tuple[int, ...], ...]]:
    d_in, d_sae, d_out = cfg.d_in, cfg.d_sae, cfg.out_dim
    out: dict[str, tuple[tuple[int, ...], ...]] = {
        "W_enc": ((d_in, d_sae),),
        "b_enc": ((d_sae,),),
        "W_dec": ((d_sae, d_out),),
        "b_dec": ((d_out,),),
    }
    if cfg.kind == "jumprelu":
        out["threshold"] = ((d_sae,),)
    elif cfg.kind == "batchtopk":
        out["threshold"] = ((d_sae,), ())
    if cfg.skip:
        out["W_skip"] = ((d_out, d_in),)
    return out


def _optional(cfg: SAEConfig) -> frozenset[str]:
    return frozenset({"threshold"} if cfg.kind == "batchtopk" else set())


def check_tensors(p: Plan, header: dict[str, TensorInfo], where: str) -> None:
    """Raise an ``SAEError`` naming the first tensor that is missing, unexpected or of the wrong shape."""
    arch = f"a {p.cfg.kind}{' skip' if p.cfg.skip else ''}{' transcoder' if p.cfg.transcoder else ' SAE'}"
    missing = [n for n in p.tensors if n not in header and n not in p.optional]
    if missing:
        raise SAEError(f"{where} lacks {', '.join(missing)}, which {arch} needs")
    unknown = [n for n in header if n not in p.tensors]
    if unknown:
        raise SAEError(
            f"{where} holds {', '.join(unknown)}, which {arch} does not use; the cfg.json architecture "
            "does not match the weights"
        )
    for name, shapes in p.tensors.items():
        if name in header and header[name].shape not in shapes:
            raise SAEError(
                f"{where}: {name} has shape {list(header[name].shape)}, but cfg.json (d_in={p.cfg.d_in}, "
                f"d_sae={p.cfg.d_sae}, d_out={p.cfg.out_dim}) implies {list(shapes[0])}"
            )
