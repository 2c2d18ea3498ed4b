"""Attribution graphs (the circuit-tracer method): direct effects between transcoder features, error nodes,
input tokens and logits on one prompt, with pruning by influence and replacement/completeness scores.

Nodes, in circuit-tracer's order: the active features (``(layer, pos, feature)``, activation > 0), one error
node per layer and position (the MLP output the transcoder misses), one token node per position (the residual
entering layer 0) and the top logits of the last position (the fewest whose probabilities reach
``logit_prob``, at most ``max_logits``). ``adjacency[t, s]`` is the direct effect of source ``s`` on target
``t`` in the replacement model (``_replacement.py``): a feature's pre-activation or a logit minus the mean
logit. A feature sends ``activation * decoder row``, an error node its error vector, a token its embedding.
Targets are handled in batches: one backward per layer for a whole batch, never one per edge.

Pruning and scores follow circuit-tracer's definitions. Influence is computed on ``|adjacency|`` with each row
normalised to sum 1: ``influence = w (A + A^2 + ...)``, ``w`` the logit probabilities. ``prune`` keeps the
features and error nodes holding ``node_threshold`` of the cumulative influence (tokens and logits always), then
the edges holding ``edge_threshold`` of the edge influence (``A[t, s] * influence of t``), then drops nodes left
without an outgoing (or, for features, incoming) edge until nothing changes. The *replacement score* is the
share of the tokens' influence in the tokens' plus errors' influence; the *completeness score* is the
influence-weighted share of every node's normalised input that does not come from error nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._render import esc, fmt, hbar_rows, key_values, show_token, standalone
from ..core._result import jsonable
from ._graph import CircuitError
from ._replacement import Replacement
from ._transcoders import transcoders as as_transcoders

if TYPE_CHECKING:
    from ..core._model import Model


@dataclass
class AttributionGraph:
    """The graph of one prompt; see the module docs. ``save(path)`` writes circuit-tracer's graph JSON."""

    adjacency: torch.Tensor  # [N, N], rows = targets
    features: torch.Tensor  # [F, 3] (layer, pos, feature index)
    activations: torch.Tensor  # [F]
    n_layers: int
    tokens: list[int]
    logit_tokens: list[int]
    logit_probs: list[float]
    prompt: str = ""
    token_strings: list[str] = field(default_factory=list)
    logit_strings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_pos(self) -> int:
        return len(self.tokens)

    @property
    def n_features(self) -> int:
        return int(self.features.shape[0])

    def slices(self) -> dict[str, slice]:
        F, E, P = self.n_features, self.n_layers * self.n_pos, self.n_pos
        return {
            "features": slice(0, F),
            "errors": slice(F, F + E),
            "tokens": slice(F + E, F + E + P),
            "logits": slice(F + E + P, F + E + P + len(self.logit_tokens)),
        }

    def logit_weights(self) -> torch.Tensor:
        w = torch.zeros(self.adjacency.shape[0])
        w[self.slices()["logits"]] = torch.tensor(self.logit_probs, dtype=torch.float32)
        return w

    def scores(self) -> tuple[float, float]:
        """``(replacement score, completeness score)`` of the whole graph (1, 1 when every error is zero)."""
        s = self.slices()
        A = normalise(self.adjacency)
        w = self.logit_weights()
        inf = influence(A, w)
        tok, err = float(inf[s["tokens"]].sum()), float(inf[s["errors"]].sum())
        replacement = tok / (tok + err) if tok + err > 0 else 0.0
        non_error = 1.0 - A[:, s["errors"]].sum(dim=1)
        out = inf + w
        completeness = float((non_error * out).sum() / out.sum()) if float(out.sum()) > 0 else 0.0
        return replacement, completeness

    def prune(self, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Pruned:
        """Nodes and edges kept at circuit-tracer's default thresholds (80% of node, 98% of edge influence)."""
        for name, v in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
            if not 0 < v <= 1:
                raise CircuitError(f"{name} must be in (0, 1], not {v}")
        return prune(self, node_threshold, edge_threshold)

    def to_json(
        self, node_threshold: float = 0.8, edge_threshold: float = 0.98, slug: str = "tsi-graph"
    ) -> dict:
        from ._ctjson import to_json

        return to_json(self, self.prune(node_threshold, edge_threshold), node_threshold, slug)

    def to_dict(self, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> dict[str, Any]:
        """circuit-tracer's graph JSON (``to_json``, pruned) with the graph's two scores under ``scores``."""
        replacement, completeness = self.scores()
        data = self.to_json(node_threshold, edge_threshold)
        return jsonable({**data, "scores": {"replacement": replacement, "completeness": completeness}})

    def to_html(self) -> str:
        """A self-contained page: the graph's size and scores, the prompt and the logits it explains."""
        replacement, completeness = self.scores()
        toks = self.token_strings or [str(t) for t in self.tokens]
        logits = self.logit_strings or [str(t) for t in self.logit_tokens]
        rows = hbar_rows(
            [(show_token(t), p, fmt(p)) for t, p in zip(logits, self.logit_probs, strict=True)], vmax=1.0
        )
        summary = key_values([
            ("active features", str(self.n_features)), ("positions", str(self.n_pos)),
            ("layers", str(self.n_layers)), ("replacement score", fmt(replacement)),
            ("completeness score", fmt(completeness)),
        ])  # fmt: skip
        prompt = esc(self.prompt or "".join(toks))
        return standalone("Attribution graph", (
            f"<h1>Attribution graph</h1><div class='prompt'>{prompt}</div>{summary}<h2>Logits explained</h2>"
            f"<table class='t'>{rows}</table><p>Open the file of <code>save()</code> in circuit-tracer's "
            "frontend or Neuronpedia for the graph itself.</p>"
        ))  # fmt: skip

    def save(
        self,
        path: str | Path,
        node_threshold: float = 0.8,
        edge_threshold: float = 0.98,
        slug: str | None = None,
    ) -> Path:
        """Write circuit-tracer's graph JSON (pruned), which its frontend and Neuronpedia render."""
        import json

        from .._io import atomic_write

        data = self.to_json(node_threshold, edge_threshold, slug or Path(path).stem)
        return atomic_write(path, json.dumps(data))

    def __repr__(self) -> str:
        r, c = self.scores()
        return (
            f"tsi.circuits.AttributionGraph({self.n_features} features, {self.n_pos} positions, "
            f"{len(self.logit_tokens)} logits; replacement {r:.3f}, completeness {c:.3f})"
        )


@dataclass
class Pruned:
    node_mask: torch.Tensor  # [N] bool
    edge_mask: torch.Tensor  # [N, N] bool
    cumulative: torch.Tensor  # [N]: each node's cumulative influence rank (circuit-tracer's node "influence")


def normalise(A: torch.Tensor) -> torch.Tensor:
    a = A.abs()
    return a / a.sum(dim=1, keepdim=True).clamp_min(1e-10)


def influence(A: torch.Tensor, w: torch.Tensor, max_iter: int = 1000) -> torch.Tensor:
    """``w (A + A^2 + ...)`` for a row-normalised acyclic ``A`` (the series ends: nilpotent)."""
    cur = w @ A
    total = cur.clone()
    for _ in range(max_iter):
        if not bool(cur.any()):
            return total
        cur = cur @ A
        total += cur
    raise CircuitError("the attribution graph's influence did not converge; its adjacency has a cycle")


def _keep_top(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Mask of the largest entries whose cumulative share first reaches ``threshold``."""
    flat = scores.flatten()
    total = float(flat.sum())
    if total <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    vals, idx = torch.sort(flat, descending=True)
    cum = torch.cumsum(vals, 0) / total
    n = int((cum < threshold).sum()) + 1
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[idx[: min(n, len(idx))]] = True
    return mask.view_as(scores)


def prune(graph: AttributionGraph, node_threshold: float, edge_threshold: float) -> Pruned:
    s = graph.slices()
    A = graph.adjacency
    w = graph.logit_weights()
    node_inf = influence(normalise(A), w) + w
    node_mask = _keep_top(node_inf, node_threshold)
    node_mask[s["tokens"]] = True
    node_mask[s["logits"]] = True
    pruned = A.clone()
    pruned[~node_mask] = 0
    pruned[:, ~node_mask] = 0
    An = normalise(pruned)
    edge_scores = An * (influence(An, w) + w)[:, None]
    edge_mask = _keep_top(edge_scores, edge_threshold) & (pruned != 0)
    srcs = slice(0, s["tokens"].start)  # features and errors need an outgoing edge
    old = torch.zeros_like(node_mask)
    while not torch.equal(old, node_mask):
        old = node_mask.clone()
        edge_mask[~node_mask] = False
        edge_mask[:, ~node_mask] = False
        node_mask[srcs] &= edge_mask[:, srcs].any(dim=0)
        node_mask[s["features"]] &= edge_mask[s["features"]].any(dim=1)
    vals, idx = torch.sort(node_inf, descending=True)
    cumulative = torch.zeros_like(node_inf)
    cumulative[idx] = torch.cumsum(vals, 0) / vals.sum().clamp_min(1e-12)
    return Pruned(node_mask, edge_mask, cumulative)


def _top_logits(logits: torch.Tensor, max_logits: int, logit_prob: float) -> tuple[list[int], list[float]]:
    probs = torch.softmax(logits, -1)
    vals, idx = torch.sort(probs, descending=True)
    n = min(max_logits, int((torch.cumsum(vals, 0) < logit_prob).sum()) + 1)
    return idx[:n].tolist(), vals[:n].tolist()


def attribution_graph(
    model: Model,
    prompt: Any,
    transcoders: Any,
    max_logits: int = 10,
    logit_prob: float = 0.95,
    batch_size: int = 256,
    layout: str = "auto",
) -> AttributionGraph:
    """The attribution graph of ``prompt`` (text or ids ``[p]``/``[1, p]``) with one transcoder per layer.

    ``transcoders``: a list/dict of ``tsi.sae.Transcoder`` or a folder of files (``_transcoders.py``).
    """
    if max_logits < 1 or not 0 < logit_prob <= 1 or batch_size < 1:
        raise CircuitError(
            "max_logits and batch_size must be >= 1 and logit_prob in (0, 1], e.g. max_logits=10, logit_prob=0.95"
        )
    ids = _ids(model, prompt)
    if not model.cfg.n_layers:
        raise CircuitError(
            "attribution graphs need a model whose adapter names its blocks (cfg.n_layers is unknown)"
        )
    tcs = as_transcoders(transcoders, model.cfg.n_layers, layout)
    rep = Replacement(model, ids, tcs)
    L, P = rep.g.n_layers, ids.shape[1]
    feats, acts = [], []
    for layer in range(L):
        nz = rep.acts[layer].nonzero()
        for pos, f in nz.tolist():
            feats.append((layer, pos, f))
        acts.append(rep.acts[layer][nz[:, 0], nz[:, 1]])
    features = torch.tensor(feats, dtype=torch.long).view(-1, 3)
    activations = torch.cat(acts) if acts else torch.zeros(0)
    logit_tokens, logit_probs = _top_logits(rep.logits, max_logits, logit_prob)
    F, K = features.shape[0], len(logit_tokens)
    N = F + L * P + P + K
    adjacency = torch.zeros(N, N)
    targets = list(range(F)) + list(range(N - K, N))
    logit_g = rep.logit_grads(torch.tensor(logit_tokens))
    for start in range(0, len(targets), batch_size):
        rows = targets[start : start + batch_size]
        adjacency[rows] = _rows(rep, rows, features, activations, logit_g, N, F, K, P)
    info = {"forwards": 1, "target_batches": -(-len(targets) // batch_size)}
    return AttributionGraph(
        adjacency, features, activations, L, ids[0].tolist(), logit_tokens, logit_probs,
        prompt if isinstance(prompt, str) else "", model.str_tokens(ids[0]),
        model.str_tokens(logit_tokens), info,
    )  # fmt: skip


def _rows(rep: Replacement, rows: list[int], features, activations, logit_g, N: int, F: int, K: int, P: int):
    """Adjacency rows of a batch of targets: one backward pass through the frozen layers."""
    L, d = rep.g.n_layers, rep.x0.shape[1]
    T = len(rows)
    out = torch.zeros(T, N)
    G = torch.zeros(T, P, d)
    feat_rows = [(j, r) for j, r in enumerate(rows) if r < F]
    for j, r in enumerate(rows):
        if r >= N - K:
            G[j, P - 1] = logit_g[r - (N - K)]
    by_layer: dict[int, list[int]] = {}
    for i, (layer, _, _) in enumerate(features.tolist()):
        by_layer.setdefault(layer, []).append(i)
    for layer in reversed(range(L)):
        tc = rep.tcs[layer]
        src = by_layer.get(layer, [])
        if src:
            pos = features[src, 1]
            dec = tc.W_dec.detach().float()[features[src, 2]] * activations[src, None]  # [S, d]
            out[:, src] = torch.einsum("tsd,sd->ts", G[:, pos], dec)
        err0 = F + layer * P
        out[:, err0 : err0 + P] = torch.einsum("tpd,pd->tp", G, rep.errors[layer])
        inject = torch.zeros_like(G)
        here = [(j, r) for j, r in feat_rows if int(features[r, 0]) == layer]
        if here:
            js = torch.tensor([j for j, _ in here])
            rs = torch.tensor([r for _, r in here])
            pos = features[rs, 1]
            w = tc.W_enc.detach().float()[:, features[rs, 2]].t()  # [n, d]
            inject[js, pos] = rep.ln2[layer].lin_t(w, pos)
        if rep.parallel:
            G = G + rep.attn_t(layer, G) + inject
        else:
            G = G + inject
            G = G + rep.attn_t(layer, G)
    tok0 = F + L * P
    out[:, tok0 : tok0 + P] = torch.einsum("tpd,pd->tp", G, rep.x0)
    return out


def _ids(model: Model, prompt: Any) -> torch.Tensor:
    if isinstance(prompt, str):
        if not prompt:
            raise CircuitError("the prompt is empty; give a text or token ids")
        return model.to_tokens(prompt)
    if torch.is_tensor(prompt) and prompt.dtype in (torch.long, torch.int) and prompt.ndim in (1, 2):
        ids = prompt.view(1, -1) if prompt.ndim == 1 else prompt
        if ids.shape[0] != 1:
            raise CircuitError(f"an attribution graph is for one prompt, not a batch of {ids.shape[0]}")
        return ids
    raise CircuitError(f"the prompt must be a text or token ids [p], not {type(prompt).__name__}")
