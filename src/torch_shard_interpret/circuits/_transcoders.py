"""Per-layer transcoders for attribution graphs: ours (``tsi.sae.Transcoder``), SAELens folders, circuit-tracer files.

A transcoder for layer ``L`` reads the MLP's input (the normalised residual stream) and predicts the MLP's
output. ``transcoders(...)`` turns any of these into ``{layer: Transcoder}``:

- a list (one per layer, ``None`` to skip a layer) or a dict ``{layer: Transcoder}`` of ours;
- a folder per layer in our/SAELens layout (``cfg.json`` + ``sae_weights.safetensors``), loaded by ``tsi.sae``;
- circuit-tracer's per-layer safetensors (``W_enc``, ``W_dec``, ``b_enc``, ``b_dec``, optional ``threshold``),
  or a folder with its ``config.yaml`` listing them. Its ``W_enc`` is ``[d_transcoder, d_model]`` (used with
  ``F.linear``) where SAELens and ours keep ``[d_model, d_transcoder]``: the loader transposes it, telling the
  two apart by ``b_enc``'s length (a square encoder is ambiguous and needs ``layout=``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ._graph import CircuitError

LAYOUTS = ("auto", "circuit-tracer", "saelens")


def transcoders(spec: Any, n_layers: int, layout: str = "auto") -> dict[int, Any]:
    """``{layer: Transcoder}`` from a list, a dict, a folder or a list of files (see the module docs)."""
    if layout not in LAYOUTS:
        raise CircuitError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if isinstance(spec, (str, Path)):
        spec = _from_folder(Path(spec), layout)
    if isinstance(spec, (list, tuple)):
        spec = {i: t for i, t in enumerate(spec) if t is not None}
    if not isinstance(spec, dict) or not spec:
        raise CircuitError(
            "transcoders must be a non-empty list (one per layer), a dict {layer: transcoder} or a folder of files"
        )
    out = {}
    for layer, t in spec.items():
        if not isinstance(layer, int) or not 0 <= layer < n_layers:
            raise CircuitError(f"transcoder layer {layer!r} is not a layer of this {n_layers}-layer model")
        out[layer] = load_one(t, layout) if isinstance(t, (str, Path)) else t
        if not hasattr(out[layer], "encode") or not hasattr(out[layer], "W_dec"):
            raise CircuitError(
                f"the transcoder for layer {layer} is a {type(out[layer]).__name__}; give a tsi.sae.Transcoder or a file"
            )
    return dict(sorted(out.items()))


def _from_folder(path: Path, layout: str) -> list | dict:
    if not path.exists():
        raise CircuitError(f"transcoder path {str(path)!r} does not exist; give a folder or safetensors file")
    cfg = path / "config.yaml"
    if cfg.is_file():
        import yaml

        raw = yaml.safe_load(cfg.read_text()) or {}
        items = raw.get("transcoders") or []
        if not items:
            raise CircuitError(f"{cfg} lists no transcoders; it needs a 'transcoders' list of files")
        out = {}
        for i, item in enumerate(items):
            file = item.get("filepath") or item.get("path") if isinstance(item, dict) else item
            if file is None:
                raise CircuitError(f"{cfg}: transcoders[{i}] names no file; give it a 'filepath'")
            layer = int(item.get("layer", i)) if isinstance(item, dict) else i
            out[layer] = load_one(path / str(file) if not Path(str(file)).is_absolute() else file, layout)
        return out
    files = sorted(path.glob("*.safetensors"))
    if files:
        return [load_one(f, layout) for f in files]
    subdirs = sorted(p for p in path.iterdir() if (p / "cfg.json").is_file())
    if subdirs:
        return [load_one(p, layout) for p in subdirs]
    raise CircuitError(f"{str(path)!r} holds no config.yaml, safetensors files or SAE folders")


def load_one(path: str | Path, layout: str = "auto") -> Any:
    """One transcoder from a SAELens/our folder or a circuit-tracer safetensors file."""
    from ..sae import Transcoder
    from ..sae import load as load_sae

    path = Path(path)
    if path.is_dir():
        return load_sae(path)
    from safetensors.torch import load_file

    try:
        w = load_file(str(path))
    except Exception as e:  # safetensors raises its own types for bad files
        raise CircuitError(
            f"cannot read transcoder file {str(path)!r} ({e}); give a safetensors file"
        ) from None
    missing = [k for k in ("W_enc", "W_dec", "b_enc", "b_dec") if k not in w]
    if missing:
        raise CircuitError(
            f"{str(path)!r} lacks {', '.join(missing)}; a transcoder file needs W_enc, W_dec, b_enc, b_dec"
        )
    if "W_skip" in w:
        raise CircuitError(
            f"{str(path)!r} has a skip connection (W_skip), which attribution graphs do not support yet"
        )
    d_sae, d_out = w["b_enc"].shape[0], w["b_dec"].shape[0]
    enc = w["W_enc"]
    if layout == "auto":
        if enc.shape[0] == enc.shape[1]:
            raise CircuitError(
                f"{str(path)!r} has a square W_enc {list(enc.shape)}, so its orientation is ambiguous; pass "
                "layout='circuit-tracer' ([d_transcoder, d_model]) or layout='saelens' ([d_model, d_transcoder])"
            )
        layout = "circuit-tracer" if enc.shape[0] == d_sae else "saelens"
    if layout == "circuit-tracer":
        enc = enc.t()
    if enc.shape[1] != d_sae or tuple(w["W_dec"].shape) != (d_sae, d_out):
        raise CircuitError(
            f"{str(path)!r}: W_enc {list(w['W_enc'].shape)} and W_dec {list(w['W_dec'].shape)} do not fit "
            f"b_enc [{d_sae}] and b_dec [{d_out}] in the {layout} layout"
        )
    kind = "jumprelu" if "threshold" in w else "relu"
    t = Transcoder(d_in=enc.shape[0], d_sae=d_sae, d_out=d_out, kind=kind, k=None, dtype="float32")
    with torch.no_grad():
        t.W_enc.copy_(enc.float())
        t.W_dec.copy_(w["W_dec"].float())
        t.b_enc.copy_(w["b_enc"].float())
        t.b_dec.copy_(w["b_dec"].float())
        if kind == "jumprelu":
            t.log_threshold.copy_(w["threshold"].float().clamp_min(1e-12).log().expand(d_sae))
    return t.eval()


def save_circuit_tracer(t: Any, path: str | Path) -> Path:
    """Write one transcoder as a circuit-tracer safetensors file (``W_enc`` transposed to ``[d_transcoder, d_model]``)."""
    from safetensors.torch import save_file

    from .._io import atomic_path

    tensors = {
        "W_enc": t.W_enc.detach().t().contiguous().float().cpu(),
        "W_dec": t.W_dec.detach().contiguous().float().cpu(),
        "b_enc": t.b_enc.detach().float().cpu(),
        "b_dec": t.b_dec.detach().float().cpu(),
    }
    thr = getattr(t, "threshold_values", None)
    if thr is not None:
        tensors["threshold"] = thr.detach().float().cpu()
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    return path
