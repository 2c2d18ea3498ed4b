"""Loading the reference decoders: Hugging Face safetensors folders, the embedded SmolLM2, random weights.

``jsi.load("smollm2-135m")`` reads the safetensors copy that torch-shard-interpret caches (``$TSI_CACHE`` or
``~/.cache/torch-shard-interpret/models/smollm2-135m``: ``config.json``, ``model.safetensors``,
``tokenizer.json``); torch is never imported. ``from_pretrained(folder)`` reads any LLaMA- or GPT-2-layout
folder written by ``save_pretrained``. ``random(cfg)`` makes seeded random weights for tests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import ModelError
from .._model import Model
from ._config import DecoderConfig

EMBEDDED = "smollm2-135m"
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def cache_dir() -> Path:
    return Path(os.environ.get("TSI_CACHE") or Path.home() / ".cache" / "torch-shard-interpret") / "models"


def read_tensors(folder: Path, arch: str) -> dict[str, np.ndarray]:
    """HF tensor name -> float32 numpy array, with GPT-2's Conv1D weights turned into the ``[out, in]`` layout."""
    from safetensors.numpy import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{str(folder)!r} has no .safetensors file; save the model with safe_serialization")
    out: dict[str, np.ndarray] = {}
    for f in files:
        out.update(load_file(str(f)))
    if arch == "gpt2":
        out = {k.removeprefix("transformer."): v for k, v in out.items()}
        out = {k: (v.T if k.endswith(_CONV1D) else v) for k, v in out.items()}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def random_tensors(cfg: DecoderConfig, seed: int = 0, std: float = 0.02) -> dict[str, np.ndarray]:
    """Seeded random weights with the HF names of ``cfg``'s architecture (norm weights 1, biases small)."""
    rng = np.random.default_rng(seed)
    d, m, v = cfg.d_model, cfg.d_mlp, cfg.d_vocab

    def w(*shape):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def ones(n):
        return (1.0 + rng.standard_normal(n) * 0.1).astype(np.float32)

    t: dict[str, np.ndarray] = {}
    if cfg.arch == "llama":
        hd, kvd = cfg.n_heads * cfg.d_head, cfg.n_kv_heads * cfg.d_head
        t["model.embed_tokens.weight"] = w(v, d)
        for i in range(cfg.n_layers):
            p = f"model.layers.{i}."
            t |= {p + "input_layernorm.weight": ones(d), p + "post_attention_layernorm.weight": ones(d)}
            t |= {p + "self_attn.q_proj.weight": w(hd, d), p + "self_attn.k_proj.weight": w(kvd, d)}
            t |= {p + "self_attn.v_proj.weight": w(kvd, d), p + "self_attn.o_proj.weight": w(d, hd)}
            t |= {p + "mlp.gate_proj.weight": w(m, d), p + "mlp.up_proj.weight": w(m, d)}
            t[p + "mlp.down_proj.weight"] = w(d, m)
        t["model.norm.weight"] = ones(d)
        if not cfg.tie:
            t["lm_head.weight"] = w(v, d)
        return t
    t |= {"wte.weight": w(v, d), "wpe.weight": w(cfg.max_pos, d)}
    for i in range(cfg.n_layers):
        p = f"h.{i}."
        for ln in ("ln_1", "ln_2"):
            t |= {f"{p}{ln}.weight": ones(d), f"{p}{ln}.bias": w(d)}
        t |= {p + "attn.c_attn.weight": w(3 * d, d), p + "attn.c_attn.bias": w(3 * d)}
        t |= {p + "attn.c_proj.weight": w(d, d), p + "attn.c_proj.bias": w(d)}
        t |= {p + "mlp.c_fc.weight": w(m, d), p + "mlp.c_fc.bias": w(m)}
        t |= {p + "mlp.c_proj.weight": w(d, m), p + "mlp.c_proj.bias": w(d)}
    t |= {"ln_f.weight": ones(d), "ln_f.bias": w(d)}
    return t


def build(cfg: DecoderConfig, tensors: dict[str, Any], framework: str = "nnx") -> Any:
    """The reference module (``framework`` ``"nnx"`` or ``"eqx"``) holding ``tensors``."""
    if framework == "nnx":
        from ._nnx import build as b
    elif framework == "eqx":
        from ._eqx import build as b
    else:
        raise ModelError(f"framework must be 'nnx' (Flax NNX) or 'eqx' (Equinox), not {framework!r}")
    try:
        return b(cfg, tensors)
    except KeyError as exc:
        raise ModelError(
            f"the checkpoint has no tensor {exc.args[0]!r} for a {cfg.arch} reference model"
        ) from None


def tokenizer_of(folder: Path) -> Any:
    f = folder / "tokenizer.json"
    if not f.is_file():
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(f))


def from_pretrained(path: str | os.PathLike, framework: str = "nnx") -> Model:
    """A ``jsi.Model`` of the reference decoder for a Hugging Face folder (config.json + safetensors)."""
    folder = Path(path)
    cfg = DecoderConfig.from_dir(folder)
    model = Model(build(cfg, read_tensors(folder, cfg.arch), framework), tokenizer=tokenizer_of(folder))
    eos = json.loads((folder / "config.json").read_text()).get("eos_token_id")
    model.eos_token_id = eos[0] if isinstance(eos, list) else eos
    return model


def random(cfg: DecoderConfig, framework: str = "nnx", seed: int = 0) -> Model:
    return Model(build(cfg, random_tensors(cfg, seed), framework))


def tiny_config(arch: str = "llama", **over: Any) -> DecoderConfig:
    """A small config for tests and examples (2 blocks, d_model 32, 4 heads, GQA for LLaMA)."""
    base = dict(arch=arch, n_layers=2, d_model=32, n_heads=4, d_head=8, d_vocab=64, d_mlp=64,
                n_kv_heads=2 if arch == "llama" else 4, max_pos=64, tie=arch == "gpt2", eps=1e-5)  # fmt: skip
    base.update(over)
    return DecoderConfig(**base)


def load(name: str = EMBEDDED, framework: str = "nnx") -> Model:
    """``jsi.load("smollm2-135m")`` (the embedded model) or a local Hugging Face folder."""
    if Path(name).is_dir():
        return from_pretrained(name, framework)
    if name != EMBEDDED:
        raise ModelError(
            f"unknown model {name!r}; jsi.load takes {EMBEDDED!r} or a local Hugging Face folder"
        )
    folder = cache_dir() / EMBEDDED
    if not (folder / "model.safetensors").is_file() or not (folder / "config.json").is_file():
        raise ModelError(
            f"the embedded model is not in {str(folder)!r}; create it once with the PyTorch side: "
            "`tsi models` or python -c \"import torch_shard_interpret as tsi; tsi.load('smollm2-135m')\""
        )
    return from_pretrained(folder, framework)
