"""The model work behind each endpoint: ``fn(state, body, progress) -> JSON-able dict``.

These functions are synchronous and run in worker threads; a ``tsi.Model`` is safe to share between
threads because each call's hooks act only in the thread that made the call.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from ..core._result import RunResult, logits_of
from ..report._techniques import Technique
from . import _specs as S
from ._sae import DEFAULT_CORPUS, ServedSAE, compute_stats, latent_view, search_latents
from ._specs import RequestError
from ._techniques import describe

if TYPE_CHECKING:
    from ..core._model import Model

Progress = Callable[[float, str], None]
MAX_TOP_K = 50
MAX_VECTORS = 200
MAX_COST = 1_000_000  # sites x positions x tokens of one request
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


@dataclass
class State:
    """Everything the app serves: the model and what it was started with."""

    model: Model
    model_name: str = "model"
    vectors: dict[str, Any] = field(default_factory=dict)  # name -> SteeringVector
    saes: dict[str, ServedSAE] = field(default_factory=dict)
    stores: dict[str, Any] = field(default_factory=dict)  # name -> opened activation store
    attention: bool = False  # attention patterns enabled (the model was switched to eager at start-up)
    attention_note: str = ""
    corpus: tuple[Any, ...] = DEFAULT_CORPUS
    corpus_name: str = "built-in corpus"
    max_cost: int = MAX_COST
    techniques: dict[str, Technique] = field(default_factory=dict)  # registered when the app was made
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _noop(_: float, __: str) -> None:
    pass


def _tokens(model: Model, run: RunResult) -> list[dict[str, Any]]:
    """``[{"id", "text"}]`` of the first prompt's ids in ``run``, the text read by ``Model.str_tokens``."""
    if run.tokens is None:
        raise RequestError("this model's runs carry no token ids; serve a model with a tokenizer", 500)
    ids = run.tokens[0]  # [pos]
    return [{"id": int(i), "text": t} for i, t in zip(ids.tolist(), model.str_tokens(ids), strict=True)]


def logit_label(model: Model, token_id: int) -> str:
    """A token in a metric's name: its text quoted (``' Paris'``), or its bare id without a tokenizer."""
    return repr(model.str_tokens([token_id])[0]) if model.tokenizer is not None else str(token_id)


def _top(model: Model, logits: torch.Tensor, k: int) -> list[dict[str, Any]]:
    """Top ``k`` of a ``[d_vocab]`` logit vector."""
    probs = logits.float().softmax(-1)
    vals, ids = probs.topk(k)
    texts = model.str_tokens(ids)
    return [
        {"token": t, "id": i, "prob": round(p, 5), "logit": round(float(logits[i]), 4)}
        for t, p, i in zip(texts, vals.tolist(), ids.tolist(), strict=True)
    ]


def _n_tokens(state: State, body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > S.MAX_PROMPT_CHARS:
        return 0  # the endpoint itself names what is wrong with the field
    return int(state.model.to_tokens(value).shape[-1])


def request_cost(state: State, kind: str, body: Mapping[str, Any]) -> tuple[int, str]:
    """``(cost, how it was counted)``: sites x positions x tokens of the forwards a request would run."""
    if kind == "patch":
        n = _n_tokens(state, body, "clean")
        pattern = body.get("sites") or "blocks.*.resid_pre"
        n_sites = len(state.model.resolve(pattern)) if isinstance(pattern, str) and len(pattern) <= 200 else 0
        return n_sites * n * n, f"{n_sites} sites x {n} positions x {n} tokens"
    if kind in ("generate", "steer"):
        n = _n_tokens(state, body, "prompt")
        new = body.get("max_new_tokens", 20)
        new = new if isinstance(new, int) and not isinstance(new, bool) and new > 0 else 0
        runs = 2 if kind == "steer" else 1
        return runs * new * (n + new), f"{runs} generation(s) x {new} new tokens x {n + new} tokens"
    if kind in ("run", "lens", "attention", "dla"):
        n = _n_tokens(state, body, "prompt")
        return n, f"1 forward x {n} tokens"
    if kind in state.techniques:
        n, runs = _n_tokens(state, body, "prompt"), state.techniques[kind].forwards
        return runs * n, f"{runs} forward(s) x {n} tokens"
    return 0, ""


def check_cost(state: State, kind: str, body: Mapping[str, Any]) -> None:
    """Refuse (400) a request whose cost is over the server's cap, naming the cap."""
    cost, how = request_cost(state, kind, body)
    if cost > state.max_cost:
        raise RequestError(
            f"this {kind} request costs {cost:,} ({how}); the cap is {state.max_cost:,} "
            "(sites x positions x tokens): shorten the prompt, select fewer sites, or start the server "
            "with a larger --max-cost"
        )


# ---- endpoints ----------------------------------------------------------------------------------
def info(state: State) -> dict[str, Any]:
    m = state.model
    cfg = m.cfg
    return {
        "model": state.model_name,
        "architecture": cfg.architecture,
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "d_model": cfg.d_model,
        "d_vocab": cfg.d_vocab,
        "n_ctx": cfg.n_ctx,
        "attention": {
            "enabled": state.attention,
            "implementation": m.attention,
            "note": state.attention_note,
        },
        "canonical_sites": [s for s in m.sites() if ":" not in s],
        "vectors": vectors_list(state)["vectors"],
        "saes": [sae_summary(s) for s in state.saes.values()],
        "stores": sorted(state.stores),
        "techniques": describe(state.techniques),
        "limits": {
            "max_prompt_chars": S.MAX_PROMPT_CHARS,
            "max_new_tokens": S.MAX_NEW_TOKENS,
            "max_cost": state.max_cost,
        },
    }


def sites(state: State, pattern: str | None) -> dict[str, Any]:
    if pattern is not None and len(pattern) > 200:
        raise RequestError("'pattern' is longer than 200 characters")
    names = state.model.sites(pattern) if pattern else state.model.sites()
    return {"pattern": pattern, "sites": names}


def run(state: State, body: Mapping[str, Any], progress: Progress = _noop) -> dict[str, Any]:
    m = state.model
    prompt = S.text(body, "prompt")
    k = S.integer(body, "top_k", 5, 1, MAX_TOP_K)
    ivs = S.interventions(m, body.get("interventions"), state.vectors)
    r = m.run(prompt, interventions=ivs or None)
    logits = logits_of(r, "the run endpoint")[0]  # [pos, d_vocab]
    return {
        "prompt": prompt,
        "tokens": _tokens(m, r),
        "predictions": [_top(m, logits[p], k) for p in range(logits.shape[0])],
        "n_interventions": sum(len(v) for v in ivs.values()),
    }


def lens(state: State, body: Mapping[str, Any], progress: Progress = _noop) -> dict[str, Any]:
    import torch_shard_interpret as tsi

    m = state.model
    prompt = S.text(body, "prompt")
    target = S.text(body, "target", required=False)
    k = S.integer(body, "top_k", 5, 1, 20)
    res = tsi.lens.logit_lens(m, prompt, target=target or None)
    return {"prompt": prompt, **res.to_dict(top_k=k)}


def attention(state: State, body: Mapping[str, Any], progress: Progress = _noop) -> dict[str, Any]:
    m = state.model
    if not state.attention:
        raise RequestError(
            "attention patterns are off on this server: start it without --no-attention "
            "(the model is then switched to eager attention once, at start-up)",
            409,
        )
    prompt = S.text(body, "prompt")
    n = m.cfg.n_layers or 0
    layer = S.integer(body, "layer", 0, 0, max(n - 1, 0))
    site = f"blocks.{layer}.attn.pattern"
    r = m.run(prompt, cache=site, return_logits=False)
    pat = r.cache[site][0].float()  # [n_heads, q_pos, k_pos]
    return {
        "prompt": prompt,
        "layer": layer,
        "site": site,
        "tokens": _tokens(m, r),
        "patterns": [[[round(v, 4) for v in row] for row in head] for head in pat.tolist()],
    }


def dla(state: State, body: Mapping[str, Any], progress: Progress = _noop) -> dict[str, Any]:
    import torch_shard_interpret as tsi

    m = state.model
    prompt = S.text(body, "prompt")
    target = S.text(body, "target", required=False) or None
    baseline = S.text(body, "baseline", required=False) or None
    position = S.integer(body, "position", -1, -100000, None)
    res = tsi.attribution.direct_logit_attribution(
        m, prompt, target=target, baseline=baseline, position=position
    )
    return {"prompt": prompt, **res.to_dict()}


def generate(state: State, body: Mapping[str, Any], progress: Progress = _noop) -> dict[str, Any]:
    m = state.model
    prompt = S.text(body, "prompt")
    n = S.integer(body, "max_new_tokens", 20, 1, S.MAX_NEW_TOKENS)
    ivs = S.interventions(m, body.get("interventions"), state.vectors)
    text = m.generate(prompt, max_new_tokens=n, interventions=ivs or None)
    return {"prompt": prompt, "text": text, "n_interventions": sum(len(v) for v in ivs.values())}


def _steering_vector(state: State, body: Mapping[str, Any]) -> Any:
    from ..steering import SteeringVector

    if body.get("vector_name") is not None:
        name = body["vector_name"]
        if not isinstance(name, str) or name not in state.vectors:
            known = ", ".join(sorted(state.vectors)) or "none"
            raise RequestError(f"'vector_name' {name!r} is not a known vector (known: {known})", 404)
        return state.vectors[name]
    if body.get("vector") is not None:
        site = S.text(body, "site")
        return SteeringVector(S.vector(body["vector"]), site, {"method": "given"})
    if body.get("positive") is not None or body.get("negative") is not None:
        site = S.text(body, "site")
        return SteeringVector.from_pair(
            state.model, S.text(body, "positive"), S.text(body, "negative"), site=site
        )
    raise RequestError(
        "give a steering vector: 'vector_name', 'vector' (with 'site') or 'positive'/'negative' (with 'site')"
    )


def steer(state: State, body: Mapping[str, Any], progress: Progress = _noop) -> dict[str, Any]:
    """Unsteered and steered generations of one prompt, side by side."""
    m = state.model
    prompt = S.text(body, "prompt")
    n = S.integer(body, "max_new_tokens", 20, 1, S.MAX_NEW_TOKENS)
    scale = S.number(body, "scale", 4.0)
    positions = S.int_list(body.get("positions"), "positions")
    sv = _steering_vector(state, body)
    site = S.text(body, "apply_site", required=False) or sv.site
    if site != sv.site:
        sv = sv.at(site)
    sv._check_fits(m)
    progress(0.1, "unsteered generation")
    unsteered = m.generate(prompt, max_new_tokens=n) if body.get("unsteered", True) else None
    progress(0.55, "steered generation")
    steered = m.generate(prompt, max_new_tokens=n, interventions={sv.site: sv.intervention(scale, positions)})
    return {
        "prompt": prompt,
        "site": sv.site,
        "scale": scale,
        "vector_norm": round(sv.norm, 5),
        "unsteered": unsteered,
        "steered": steered,
    }


def vectors_list(state: State) -> dict[str, Any]:
    with state.lock:
        items = list(state.vectors.items())
    return {
        "vectors": [
            {
                "name": k,
                "site": v.site,
                "norm": round(v.norm, 5),
                "d": int(v.vector.shape[0]),
                "method": v.metadata.get("method"),
            }
            for k, v in sorted(items)
        ]
    }


def make_vector(state: State, body: Mapping[str, Any], progress: Progress = _noop) -> dict[str, Any]:
    """A steering vector from two prompts (ActAdd), kept in memory under ``name`` (never written to disk)."""
    from ..steering import SteeringVector

    m = state.model
    positive, negative = S.text(body, "positive"), S.text(body, "negative")
    site = S.text(body, "site")
    position = body.get("position", "mean")
    if position != "mean" and (isinstance(position, bool) or not isinstance(position, int)):
        raise RequestError(f"'position' must be 'mean' or an integer, not {position!r}")
    sv = SteeringVector.from_pair(m, positive, negative, site=site, position=position)
    name = body.get("name")
    with state.lock:
        if name is None:
            i = len(state.vectors) + 1
            while f"pair-{i}" in state.vectors:
                i += 1
            name = f"pair-{i}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise RequestError("'name' must be 1-64 characters from letters, digits, '_', '.', '-'")
        if len(state.vectors) >= MAX_VECTORS and name not in state.vectors:
            raise RequestError(
                f"the server holds {MAX_VECTORS} vectors already; reuse a name to replace one", 409
            )
        state.vectors[name] = sv
    return {"name": name, "site": sv.site, "norm": round(sv.norm, 5), "d": int(sv.vector.shape[0])}


def patch(state: State, body: Mapping[str, Any], progress: Progress = _noop) -> dict[str, Any]:
    """Activation patching (denoising) with the metric ``logit(target) - logit(baseline)`` at the last position."""
    import torch_shard_interpret as tsi

    from ..lens._logit import as_token_id

    m = state.model
    clean, corrupt = S.text(body, "clean"), S.text(body, "corrupt")
    target = S.text(body, "target", required=False) or None
    baseline = S.text(body, "baseline", required=False) or None
    sites = S.text(body, "sites", required=False) or "blocks.*.resid_pre"
    if target is None:
        target_id = int(logits_of(m.run(clean), "the patch endpoint")[0, -1].argmax())
    else:
        target_id = as_token_id(m, target)
    baseline_id = as_token_id(m, baseline, "baseline")

    def metric(logits: torch.Tensor) -> torch.Tensor:  # [batch, pos, d_vocab] -> [batch]
        out = logits[:, -1, target_id]
        return out - logits[:, -1, baseline_id] if baseline_id is not None else out

    names = [s.name for s in m.resolve(sites)]
    if not names:
        raise RequestError(f"'sites' {sites!r} selects no site of this model")
    # Patch a few sites at a time so that the page can show progress; every chunk shares the same
    # clean and corrupt runs, so the normalised effects are those of one big call.
    n_chunks = min(len(names), 8)
    chunks = [names[i::n_chunks] for i in range(n_chunks)]
    order = {n: i for i, n in enumerate(names)}
    parts: list[Any] = []
    for c, chunk in enumerate(chunks):
        progress(c / n_chunks, f"patching sites {c + 1} of {n_chunks} groups")
        parts.append(
            tsi.patching.activation_patching(
                m, clean, corrupt, metric, sites=chunk, positions="each", progress=False
            )
        )
    rows = {name: (p, i) for p in parts for i, name in enumerate(p.sites)}
    ordered = sorted(rows, key=lambda n: order.get(n, 0))
    res = replace(
        parts[0],
        sites=ordered,
        effects=torch.stack([rows[n][0].effects[rows[n][1]] for n in ordered]),
        raw=torch.stack([rows[n][0].raw[rows[n][1]] for n in ordered]),
    )
    return {
        "clean": clean,
        "corrupt": corrupt,
        "metric": f"logit({logit_label(m, target_id)})"
        + ("" if baseline_id is None else f" - logit({logit_label(m, baseline_id)})"),
        **res.to_dict(),
    }


# ---- SAEs ---------------------------------------------------------------------------------------
def sae_summary(sae: ServedSAE) -> dict[str, Any]:
    return {
        "name": sae.name,
        "site": sae.site,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "ready": sae.stats is not None,
    }


def get_sae(state: State, name: Any) -> ServedSAE:
    if not isinstance(name, str) or name not in state.saes:
        known = ", ".join(sorted(state.saes)) or "none: start the server with --sae DIR"
        raise RequestError(f"unknown SAE {name!r} (known: {known})", 404)
    return state.saes[name]


def sae_prepare(state: State, body: Mapping[str, Any], progress: Progress = _noop) -> dict[str, Any]:
    """Compute the browser's statistics of one SAE (once; later calls return at once)."""
    sae = get_sae(state, body.get("sae"))
    with sae.lock:
        if sae.stats is None:
            sae.stats = compute_stats(state.model, sae, list(state.corpus), progress, state.corpus_name)
    st = sae.stats
    freq = st.frequency
    alive = int((freq > 0).sum())
    order = freq.argsort(descending=True)[:20].tolist()
    return {
        **sae_summary(sae),
        "n_tokens": int(st.acts.shape[0]),
        "corpus": st.corpus,
        "alive_latents": alive,
        "most_frequent": [{"latent": i, "frequency": round(float(freq[i]), 5)} for i in order],
    }


def sae_latent(state: State, name: str, latent: int) -> dict[str, Any]:
    sae = get_sae(state, name)
    sae_prepare(state, {"sae": name})
    return latent_view(state.model, sae, latent)


def sae_search(state: State, name: str, token: str | None) -> dict[str, Any]:
    sae = get_sae(state, name)
    if not token:
        raise RequestError("'token' is required: a single token such as ' Paris'")
    sae_prepare(state, {"sae": name})
    return search_latents(state.model, sae, token)


# Work that POST /api/<kind> runs at once and POST /api/jobs runs in the background.
KINDS: dict[str, Callable[[State, Mapping[str, Any], Progress], dict[str, Any]]] = {
    "run": run,
    "lens": lens,
    "attention": attention,
    "dla": dla,
    "generate": generate,
    "steer": steer,
    "patch": patch,
    "sae_prepare": sae_prepare,
}
