"""Sparse autoencoders for the feature browser: loading (SAELens layout) and per-latent statistics.

``load_sae(dir)`` uses ``tsi.sae.load`` when that package is installed and otherwise reads the SAELens
layout itself (``cfg.json`` + ``sae_weights.safetensors`` with ``W_enc [d_in, d_sae]``, ``b_enc``,
``W_dec [d_sae, d_in]``, ``b_dec``, optionally ``threshold``). Statistics are computed once per SAE over a
corpus (an activation store's tokens or a small built-in text list) and kept in memory.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._specs import RequestError

# A small mixed corpus used when the server was started without an activation store.
DEFAULT_CORPUS = (
    "The Eiffel Tower is located in the city of Paris, the capital of France.",
    "When Mary and John went to the store, John gave a drink to Mary.",
    "I love this movie; the acting was wonderful and the music was great.",
    "I hate this movie; the plot was terrible and the ending was bad.",
    "The cat sat on the mat and looked at the dog in the garden.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "Water boils at 100 degrees Celsius at sea level.",
    "She opened the book, read the first page, and smiled.",
    "The stock market fell sharply on Monday after the announcement.",
    "In 1969, Neil Armstrong became the first person to walk on the Moon.",
    "The quick brown fox jumps over the lazy dog.",
    "Rome is the capital of Italy, and Berlin is the capital of Germany.",
    "He was very happy because his team won the game last night.",
    "They were sad when the old house by the river was sold.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The doctor told the patient to rest and drink plenty of water.",
    "One, two, three, four, five, six, seven, eight, nine, ten.",
    "Please send the report to the team before Friday afternoon.",
    "The Colosseum is located in the city of Rome.",
    "My favourite colours are red, blue and green.",
    "import torch\nx = torch.zeros(3, 4)\ny = x.sum(dim=0)",
    "The river flows through the valley toward the sea.",
    "What is the meaning of life? Many philosophers have asked this question.",
    "Yesterday it rained all day, but today the sun is shining.",
)

_TL_SUFFIX = {
    "hook_resid_pre": "resid_pre",
    "hook_resid_post": "resid_post",
    "hook_mlp_out": "mlp.out",
    "hook_attn_out": "attn.out",
    "hook_resid_mid": "resid_mid",
}


@dataclass
class ServedSAE:
    """An SAE as the browser uses it: weights as float32 tensors and the site it reads."""

    name: str
    path: str
    site: str
    d_in: int
    d_sae: int
    encode: Callable[[torch.Tensor], torch.Tensor]
    W_dec: torch.Tensor  # [d_sae, d_in]
    cfg: dict[str, Any] = field(default_factory=dict)
    stats: LatentStats | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def site_from_hook(hook: str) -> str:
    """SAELens/TransformerLens hook names (``blocks.6.hook_resid_post``) -> tsi sites (``blocks.6.resid_post``)."""
    m = re.fullmatch(r"blocks\.(\d+)\.(hook_[a-z_]+)", hook)
    if m and m.group(2) in _TL_SUFFIX:
        return f"blocks.{m.group(1)}.{_TL_SUFFIX[m.group(2)]}"
    return hook


def load_sae(path: str | Path, name: str | None = None) -> ServedSAE:
    path = Path(path)
    cfg_file, weights = path / "cfg.json", path / "sae_weights.safetensors"
    if not cfg_file.is_file() or not weights.is_file():
        raise OSError(
            f"{str(path)!r} is not an SAE directory: it needs cfg.json and sae_weights.safetensors (SAELens layout)"
        )
    try:
        cfg = json.loads(cfg_file.read_text())
    except ValueError as exc:
        raise OSError(f"{str(cfg_file)!r} is not valid JSON ({exc})") from None
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    hook = cfg.get("hook_name") or meta.get("hook_name") or cfg.get("site") or cfg.get("hook_point")
    if not isinstance(hook, str):
        raise OSError(
            f"{str(cfg_file)!r} names no site: it needs 'hook_name' (e.g. 'blocks.6.hook_resid_post')"
        )
    name = name or path.name
    sae = _load_with_tsi(path)
    if sae is not None:
        W_dec = _param(sae, "W_dec")
        if W_dec is not None:
            W_dec = W_dec.detach().float().cpu()
            if W_dec.shape[0] != int(cfg.get("d_sae", W_dec.shape[0])):
                W_dec = W_dec.T
            enc = _tsi_encoder(sae)
            return ServedSAE(
                name, str(path), site_from_hook(hook), W_dec.shape[1], W_dec.shape[0], enc, W_dec, cfg
            )
    return _load_minimal(path, name, cfg, site_from_hook(hook))


def _load_with_tsi(path: Path) -> Any:
    try:
        from .. import sae as tsi_sae  # the library's own SAE package, once it is installed
    except ImportError:
        return None
    loader = getattr(tsi_sae, "load", None)
    if loader is None:
        return None
    try:
        return loader(str(path))
    except Exception:  # noqa: BLE001 - fall back to the minimal reader below
        return None


def _param(sae: Any, name: str) -> torch.Tensor | None:
    value = getattr(sae, name, None)
    return value if torch.is_tensor(value) else None


def _tsi_encoder(sae: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    def encode(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            p = next(iter(sae.parameters()), None)
            if p is not None:
                x = x.to(p.device, p.dtype)
            return sae.encode(x).float().cpu()

    return encode


def _load_minimal(path: Path, name: str, cfg: dict[str, Any], site: str) -> ServedSAE:
    try:
        from safetensors.torch import load_file

        w = load_file(str(path / "sae_weights.safetensors"))
    except Exception as exc:  # noqa: BLE001 - a corrupt file
        raise OSError(
            f"cannot read {str(path / 'sae_weights.safetensors')!r}: {' '.join(str(exc).split())}"
        ) from None
    missing = [k for k in ("W_enc", "b_enc", "W_dec") if k not in w]
    if missing:
        raise OSError(f"{str(path)!r}: sae_weights.safetensors lacks {', '.join(missing)}")
    W_enc, b_enc, W_dec = w["W_enc"].float(), w["b_enc"].float(), w["W_dec"].float()  # [d_in, d_sae], ...
    b_dec = w.get("b_dec", torch.zeros(W_dec.shape[1])).float()
    threshold = w.get("threshold")
    arch = str(cfg.get("architecture", "standard")).lower()
    kwargs = cfg.get("activation_fn_kwargs") or {}
    k = cfg.get("k") or kwargs.get("k")
    # SAELens v5 writes TopK as architecture "standard" with activation_fn_str "topk"
    if "topk" in (cfg.get("activation_fn"), cfg.get("activation_fn_str"), arch):
        arch = "topk"
    sub_b_dec = bool(cfg.get("apply_b_dec_to_input", True))

    def encode(x: torch.Tensor) -> torch.Tensor:  # [n, d_in] -> [n, d_sae]
        x = x.float()
        pre = (x - b_dec if sub_b_dec else x) @ W_enc + b_enc
        if arch == "jumprelu" and threshold is not None:
            return pre * (pre > threshold.float())
        acts = torch.relu(pre)
        if arch == "topk" and k:
            top = acts.topk(int(k), dim=-1)
            acts = torch.zeros_like(acts).scatter_(-1, top.indices, top.values)
        return acts

    return ServedSAE(name, str(path), site, W_enc.shape[0], W_enc.shape[1], encode, W_dec, cfg)


# ---- statistics ---------------------------------------------------------------------------------
@dataclass
class LatentStats:
    acts: torch.Tensor  # [n_tokens, d_sae] float16 activations over the corpus
    token_ids: torch.Tensor  # [n_tokens]
    doc: torch.Tensor  # [n_tokens] document index of each token
    str_tokens: list[str]
    frequency: torch.Tensor  # [d_sae] fraction of tokens where the latent is > 0
    max_act: torch.Tensor  # [d_sae]
    logit_effects: torch.Tensor | None  # [d_sae, d_vocab] (CPU float32), None without an unembedding
    corpus: str


def compute_stats(
    model: Any, sae: ServedSAE, texts: Sequence[str], progress: Callable[[float, str], None], corpus: str
) -> LatentStats:
    """Run ``texts`` through the model, encode the SAE's site and keep the latents."""
    from ..core._errors import TsiError

    model.resolve(sae.site)
    d = model.cfg.d_model
    if d is not None and ".resid" in sae.site and d != sae.d_in:
        raise TsiError(
            f"the SAE {sae.name!r} reads vectors of size {sae.d_in}, but this model's d_model is {d}"
        )
    acts, ids, docs, strs = [], [], [], []
    for i, t in enumerate(texts):
        progress(i / max(len(texts), 1) * 0.9, f"encoding text {i + 1} of {len(texts)}")
        run = model.run(t, cache=sae.site, return_logits=False)
        x = run.cache[sae.site][0].float().cpu()  # [pos, d_in]
        acts.append(sae.encode(x).to(torch.float16))
        row = run.tokens[0]
        ids.append(row)
        docs.append(torch.full((row.shape[0],), i))
        strs.extend(_decode(model, row.tolist()))
    A = torch.cat(acts)  # [n_tokens, d_sae]
    progress(0.92, "logit effects")
    effects = None
    try:
        from ..lens._logit import readout_modules

        _, head = readout_modules(model)
        w = getattr(head, "weight", None)
        if torch.is_tensor(w) and w.shape[1] == sae.W_dec.shape[1]:
            effects = sae.W_dec @ w.detach().float().cpu().T  # [d_sae, d_vocab]
    except Exception:  # noqa: BLE001 - no unembedding to read: no logit effects
        effects = None
    Af = A.float()
    return LatentStats(
        acts=A,
        token_ids=torch.cat(ids),
        doc=torch.cat(docs),
        str_tokens=strs,
        frequency=(Af > 0).float().mean(0),
        max_act=Af.max(0).values,
        logit_effects=effects,
        corpus=corpus,
    )


def _decode(model: Any, ids: list[int]) -> list[str]:
    tok = model.tokenizer
    return [tok.decode([t]) for t in ids] if tok is not None else [str(t) for t in ids]


def latent_view(model: Any, sae: ServedSAE, latent: int, k: int = 12, window: int = 8) -> dict[str, Any]:
    st = sae.stats
    assert st is not None
    if not 0 <= latent < sae.d_sae:
        raise RequestError(
            f"latent {latent} is out of range: {sae.name!r} has latents 0..{sae.d_sae - 1}", 404
        )
    col = st.acts[:, latent].float()  # [n_tokens]
    nz = col[col > 0]
    top = col.topk(min(k, col.shape[0]))
    contexts = []
    for v, j in zip(top.values.tolist(), top.indices.tolist(), strict=True):
        if v <= 0:
            break
        same = (st.doc == st.doc[j]).nonzero().flatten()
        lo, hi = max(int(same[0]), j - window), min(int(same[-1]), j + window // 2)
        contexts.append(
            {
                "tokens": st.str_tokens[lo : hi + 1],
                "acts": [round(float(a), 4) for a in col[lo : hi + 1].tolist()],
                "max_index": j - lo,
                "activation": round(v, 4),
            }
        )
    hist = {"edges": [], "counts": []}
    if nz.numel():
        hi_edge = float(nz.max())
        counts = torch.histc(nz, bins=20, min=0.0, max=hi_edge)
        hist = {
            "edges": [round(hi_edge * i / 20, 5) for i in range(21)],
            "counts": [int(c) for c in counts.tolist()],
        }
    effects: dict[str, Any] = {"positive": [], "negative": []}
    if st.logit_effects is not None:
        row = st.logit_effects[latent]
        for key, largest in (("positive", True), ("negative", False)):
            vals = row.topk(10, largest=largest)
            effects[key] = [
                {"token": t, "id": i, "value": round(v, 4)}
                for t, i, v in zip(
                    _decode(model, vals.indices.tolist()),
                    vals.indices.tolist(),
                    vals.values.tolist(),
                    strict=True,
                )
            ]
    return {
        "sae": sae.name,
        "latent": latent,
        "site": sae.site,
        "frequency": round(float(st.frequency[latent]), 6),
        "max_activation": round(float(st.max_act[latent]), 4),
        "n_tokens": int(col.shape[0]),
        "top_contexts": contexts,
        "histogram": hist,
        "logit_effects": effects,
        "corpus": st.corpus,
    }


def search_latents(model: Any, sae: ServedSAE, token: str, k: int = 10) -> dict[str, Any]:
    """Latents that fire most on ``token`` in the corpus, and latents whose decoder promotes it most."""
    st = sae.stats
    assert st is not None
    if model.tokenizer is None:
        raise RequestError("searching by token needs a model with a tokenizer")
    ids = model.tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise RequestError(
            f"{token!r} is {len(ids)} tokens, not one; search for a single token such as ' Paris'"
        )
    tid = int(ids[0])
    mask = st.token_ids == tid
    firing: list[dict[str, Any]] = []
    if bool(mask.any()):
        mean = st.acts[mask].float().mean(0)  # [d_sae]
        vals = mean.topk(min(k, sae.d_sae))
        firing = [
            {"latent": int(i), "mean_activation": round(float(v), 4)}
            for v, i in zip(vals.values.tolist(), vals.indices.tolist(), strict=True)
            if v > 0
        ]
    promoting: list[dict[str, Any]] = []
    if st.logit_effects is not None:
        vals = st.logit_effects[:, tid].topk(min(k, sae.d_sae))
        promoting = [
            {"latent": int(i), "logit_effect": round(float(v), 4)}
            for v, i in zip(vals.values.tolist(), vals.indices.tolist(), strict=True)
        ]
    return {
        "sae": sae.name,
        "token": token,
        "token_id": tid,
        "occurrences": int(mask.sum()),
        "firing": firing,
        "promoting": promoting,
    }
