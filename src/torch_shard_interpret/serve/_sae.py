"""Sparse autoencoders for the feature browser: loading (SAELens layout) and per-latent statistics.

``load_sae(dir)`` reads the SAELens layout through ``tsi.sae.load`` (the same strict checks as the library:
there is no second, lenient reader). Statistics are computed once per SAE over a
corpus (an activation store's tokens or a small built-in text list) and kept in memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..sae._config import SAEError
from ..sae._io import load
from ..sae._sites import site_for, tl_to_site
from ._specs import RequestError

if TYPE_CHECKING:
    from ..core._model import Model

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
    return tl_to_site(hook) or hook


def load_sae(path: str | Path, name: str | None = None) -> ServedSAE:
    """The SAE in the folder ``path`` through ``tsi.sae.load``, the library's one strict loader: a folder it
    refuses is refused here too, with the same sentence (an ``SAEError``)."""
    path = Path(path)
    sae = load(path)
    hook = sae.cfg.hook_name
    if not hook:
        raise SAEError(
            f"{str(path / 'cfg.json')!r} names no site: the browser needs 'hook_name' (e.g. "
            "'blocks.6.hook_resid_post' or 'blocks.6.resid_post')"
        )
    W_dec = sae.W_dec.detach().float().cpu()  # [d_sae, d_out]

    def encode(x: torch.Tensor) -> torch.Tensor:  # [n, d_in] -> [n, d_sae]
        with torch.no_grad():
            return sae.encode(x.to(sae.device, sae.dtype)).float().cpu()

    cfg = {**sae.cfg.extra, **{k: v for k, v in sae.cfg.to_dict().items() if k != "extra"}}
    return ServedSAE(
        name or path.name, str(path), site_from_hook(hook), sae.cfg.d_in, sae.cfg.d_sae, encode, W_dec, cfg
    )


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
    model: Model, sae: ServedSAE, texts: Sequence[str], progress: Callable[[float, str], None], corpus: str
) -> LatentStats:
    """Run ``texts`` through the model, encode the SAE's site and keep the latents."""
    from ..core._errors import TsiError

    sae.site = site_for(model, sae.site)  # e.g. a transcoder's 'blocks.3.ln2.hook_normalized'
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
        assert run.tokens is not None  # a text always gives its token ids
        row = run.tokens[0]
        ids.append(row)
        docs.append(torch.full((row.shape[0],), i))
        strs.extend(model.str_tokens(row.tolist()))
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


def latent_view(model: Model, sae: ServedSAE, latent: int, k: int = 12, window: int = 8) -> dict[str, Any]:
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
                    model.str_tokens(vals.indices.tolist()),
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


def search_latents(model: Model, sae: ServedSAE, token: str, k: int = 10) -> dict[str, Any]:
    """Latents that fire most on ``token`` in the corpus, and latents whose decoder promotes it most."""
    st = sae.stats
    assert st is not None
    tid = model.token_id(token)  # InputError (400) for text that is not one token
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
