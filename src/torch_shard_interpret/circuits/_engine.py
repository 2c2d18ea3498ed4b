"""Runs over the edge graph: record every source, differentiate every destination input, patch edges.

A destination's input is the residual stream, a sum of source writes. Patching a set of edges into
destination ``d`` replaces its input by ``x_d - sum_{s ablated} (a_s - a'_s)``, where ``a_s`` is the source's
value in this run and ``a'_s`` its reference value (the counterfactual run, a mean or zero). Each head's
query, key and value see their own copy of the residual, passed through the model's own norm and
projection modules, so heads are patched separately without copying any weights (grouped KV heads stay
grouped). One forward patches a batch of circuits: row block ``k`` applies ablation matrix ``A[k]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..core._interventions import Fn
from ..core._result import logits_of
from ._arch import Layout, call

if TYPE_CHECKING:
    from ..core._model import Model


@dataclass
class Sources:
    """Source activations of ``n`` prompts: the embedding, each layer's ``z`` and each MLP output."""

    input: torch.Tensor  # [n, p, d]
    z: list[torch.Tensor]  # per layer [n, p, H, d_head]
    mlp: list[torch.Tensor]  # per layer [n, p, d]

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Sources:
        return Sources(fn(self.input), [fn(t) for t in self.z], [fn(t) for t in self.mlp])

    def contributions(self, lay: Layout, minus: torch.Tensor | None = None) -> torch.Tensor:
        """``[S, n, p, d]`` float32, sources first: what each source writes to the residual (heads without the
        output bias), so that one source's rows are contiguous and a causal prefix of sources is a slice.
        ``minus``: an ``[S, n, p, d]`` tensor to turn into ``minus - contributions`` in place (no second copy)."""
        n, p, d = self.input.shape
        width = 1 + sum(z.shape[2] + 1 for z in self.z)
        out = (
            torch.zeros(width, n, p, d, dtype=torch.float32, device=self.input.device)
            if minus is None
            else minus
        )
        sign = 1.0 if minus is None else -1.0
        out[0].add_(self.input, alpha=sign)
        at = 1
        for i, (z, m) in enumerate(zip(self.z, self.mlp, strict=True)):
            h = z.shape[2]
            out[at : at + h].add_(torch.einsum("nphe,hed->hnpd", z, lay.w_o(i, z)), alpha=sign)
            out[at + h].add_(m, alpha=sign)
            at += h + 1
        return out


def source_sites(lay: Layout) -> list[str]:
    n = lay.graph.n_layers
    return ["embed", *(f"blocks.{i}.attn.z" for i in range(n)), *(f"blocks.{i}.mlp.out" for i in range(n))]


def as_sources(lay: Layout, cache: Any) -> Sources:
    n = lay.graph.n_layers
    return Sources(
        cache["embed"],
        [cache[f"blocks.{i}.attn.z"] for i in range(n)],
        [cache[f"blocks.{i}.mlp.out"] for i in range(n)],
    )


def capture(
    model: Model, lay: Layout, ids: torch.Tensor, interventions: dict | None = None
) -> tuple[Sources, torch.Tensor]:
    """One plain forward: ``(Sources, logits)``."""
    run = model.run(ids, cache=source_sites(lay), interventions=interventions)
    return as_sources(lay, run.cache), logits_of(run, "circuit discovery")


# ---- gradients at every destination input ---------------------------------------------------------------


def _clone(value: torch.Tensor, ctx: Any) -> torch.Tensor:
    return value.clone()  # a fresh node: its gradient is this branch's only


def grad_chunks(
    model: Model, lay: Layout, ids: torch.Tensor, scalar: Callable, interventions: dict | None = None
) -> tuple[Sources, Iterator[tuple[list[int], torch.Tensor]]]:
    """One forward and one backward: the sources, and d scalar / d (each destination's input) one projection
    (or MLP, or logits) at a time, as ``(destination indices, [n, p, k, d] float32)``, so that no
    ``[n, p, D, d]`` tensor is ever held."""
    g = lay.graph
    branch = [f"{p.path}:output" for layer in lay.layers for p in layer.projs]
    branch += [f"{layer.mlp}:input" for layer in lay.layers] + [f"{lay.unembed}:input"]
    norms = sorted(
        {f"{layer.ln1}:input" for layer in lay.layers} | {f"{layer.mlp_norm}:input" for layer in lay.layers}
    )
    norms.append(f"{lay.final_norm}:input")
    ivs: dict[str, Any] = dict(interventions or {})
    for site in [f"{layer.mlp}:input" for layer in lay.layers] + [f"{lay.unembed}:input"]:
        ivs[site] = Fn(_clone)
    run = model.run(ids, cache=[*source_sites(lay), *branch, *norms], interventions=ivs, grad=scalar)
    c, gr = run.cache, run.grads

    def chunks() -> Iterator[tuple[list[int], torch.Tensor]]:
        for i, layer in enumerate(lay.layers):
            idx = g.dest_index(i)
            x = c[f"{layer.ln1}:input"]
            for proj in layer.projs:
                dests, cols = _proj_dests(lay, proj, idx)
                yield dests, _vjp_proj(lay, layer.ln1, proj, x, gr[f"{proj.path}:output"], cols).float()
            xm = c[f"{layer.mlp_norm}:input"]
            grad = _vjp(lay.module(layer.mlp_norm), xm, gr[f"{layer.mlp}:input"]).float()
            yield idx["m"], grad[:, :, None]
        xf = c[f"{lay.final_norm}:input"]
        grad = _vjp(lay.module(lay.final_norm), xf, gr[f"{lay.unembed}:input"]).float()
        yield [len(g.dests) - 1], grad[:, :, None]

    return as_sources(lay, c), chunks()


def _proj_dests(lay: Layout, proj: Any, idx: dict[str, list[int]]) -> tuple[list[int], list[int]]:
    """The destination indices a projection feeds and the first output column of each."""
    dests, cols = [], []
    for kind, offset, heads in proj.parts:
        dests += idx[kind][:heads]
        cols += [offset + h * lay.d_head for h in range(heads)]
    return dests, cols


def _vjp(norm: torch.nn.Module, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        (out,) = torch.autograd.grad(norm(xr), xr, g)
    return out


def _vjp_proj(
    lay: Layout, norm_path: str, proj: Any, x: torch.Tensor, g: torch.Tensor, cols: list[int]
) -> torch.Tensor:
    """``[n, p, K, d]``: the gradient reaching each head's own copy of the residual through norm and projection.

    The projection is affine, so its input gradient for head ``k`` is ``g[cols_k] @ W[cols_k]`` whatever its
    input: one matmul for all heads, instead of running the projection on ``K`` copies of the residual.
    """
    K, dh = len(cols), lay.d_head
    index = torch.tensor(cols, device=g.device)[:, None] + torch.arange(dh, device=g.device)  # [K, dh]
    w = lay.w_in(proj, x.shape[-1], g)[index]  # [K, dh, d]
    cot = torch.einsum("npke,ked->npkd", g[..., index], w)
    with torch.enable_grad():
        xr = x.detach()[:, :, None].expand(*x.shape[:2], K, x.shape[-1]).clone().requires_grad_(True)
        (out,) = torch.autograd.grad(lay.module(norm_path)(xr), xr, cot)
    return out


def _gather(y: torch.Tensor, cols: list[int], dh: int) -> torch.Tensor:
    """``y[..., k, cols[k]:cols[k]+dh]`` for every copy ``k``: ``[..., K, dh]``."""
    index = (torch.tensor(cols, device=y.device)[:, None] + torch.arange(dh, device=y.device)).expand(
        *y.shape[:-1], dh
    )
    return torch.gather(y, -1, index)


# ---- patched runs -------------------------------------------------------------------------------------------


class Patcher:
    """The interventions of one batched patched forward: ``A`` is ``[K, S, D]`` (1 = patch that edge)."""

    def __init__(self, lay: Layout, ref: Sources, A: torch.Tensor, n: int):
        self.lay, self.A, self.n, self.K = lay, A, n, A.shape[0]
        self.ref = ref.map(lambda t: t.repeat(self.K, *([1] * (t.ndim - 1))))
        self.chunks: list[tuple[int, torch.Tensor]] = []  # (first source index, [b, p, n_src, d] deltas)
        self.resid: dict[str, torch.Tensor] = {}
        self.inside = False
        for i in range(lay.graph.n_layers):  # read the output projections now, never inside a hook
            lay.w_o(i, ref.z[i].float())
        rows = torch.arange(self.K).repeat_interleave(n)
        self.rowA = A.to(torch.float32)[rows]  # [b, S, D]

    def interventions(self) -> dict[str, Any]:
        lay, g = self.lay, self.lay.graph
        ivs: dict[str, list] = {}

        def add(site: str, fn: Callable) -> None:
            ivs.setdefault(site, []).append(Fn(fn))

        add("embed", self._source(lambda v: v - self.ref.input, 0))
        for i, layer in enumerate(lay.layers):
            add(f"blocks.{i}.attn.z", self._head_source(i))
            add(
                f"blocks.{i}.mlp.out",
                self._source(lambda v, i=i: v - self.ref.mlp[i], g.source_slice("m", i).start),
            )
            for path in {layer.ln1, layer.mlp_norm}:
                add(f"{path}:input", self._record(path))
            idx = g.dest_index(i)
            for proj in layer.projs:
                add(f"{proj.path}:output", self._proj_dest(layer.ln1, proj, idx))
            add(f"{layer.mlp}:input", self._dest(layer.mlp_norm, idx["m"][0]))
        add(f"{lay.final_norm}:input", self._record(lay.final_norm))
        add(f"{lay.unembed}:input", self._dest(lay.final_norm, len(g.dests) - 1))
        return ivs

    def _source(self, delta: Callable, start: int) -> Callable:
        def fn(value, ctx):
            if not self.inside:
                self.chunks.append((start, delta(value).float()[:, :, None]))
            return value

        return fn

    def _head_source(self, i: int) -> Callable:
        start = self.lay.graph.source_slice("a", i).start

        def fn(value, ctx):
            if not self.inside:
                dz = (value - self.ref.z[i]).float()
                self.chunks.append((start, torch.einsum("bphe,hed->bphd", dz, self.lay.w_o(i, dz))))
            return value

        return fn

    def _record(self, path: str) -> Callable:
        def fn(value, ctx):
            if not self.inside:
                self.resid[path] = value
            return value

        return fn

    def _delta(self, dests: list[int]) -> torch.Tensor | None:
        """``[b, p, K, d]``: the summed deltas of the patched sources feeding each destination, or None."""
        total = None
        a_all = self.rowA[:, :, dests]
        for start, chunk in self.chunks:
            a = a_all[:, start : start + chunk.shape[2]]
            if not bool(a.any()):
                continue
            t = torch.einsum("bpnd,bnk->bpkd", chunk, a)
            total = t if total is None else total + t
        return total

    def _dest(self, norm_path: str, dest: int) -> Callable:
        def fn(value, ctx):
            if self.inside:
                return value
            delta = self._delta([dest])
            if delta is None:
                return value
            x = self.resid[norm_path]
            self.inside = True
            try:
                new = self.lay.module(norm_path)(x - delta[:, :, 0].to(x.dtype))
            finally:
                self.inside = False
            return new

        return fn

    def _proj_dest(self, norm_path: str, proj: Any, idx: dict[str, list[int]]) -> Callable:
        dests, cols = _proj_dests(self.lay, proj, idx)

        def fn(value, ctx):
            if self.inside:
                return value
            used = self.rowA[:, :, dests].any(dim=1).any(dim=0)  # [K_dests]
            active = used.nonzero().flatten().tolist()
            if not active:
                return value
            delta = self._delta([dests[k] for k in active])
            if delta is None:
                return value
            x = self.resid[norm_path]
            xs = x[:, :, None] - delta.to(x.dtype)
            self.inside = True
            try:
                y = call(proj.module, self.lay.module(norm_path)(xs))
            finally:
                self.inside = False
            new = _gather(y, [cols[k] for k in active], self.lay.d_head)  # [b, p, k, dh]
            out = value.clone()
            dh = self.lay.d_head
            for j, k in enumerate(active):
                out[..., cols[k] : cols[k] + dh] = new[:, :, j]
            return out

        return fn


def patched_logits(
    model: Model, lay: Layout, ids: torch.Tensor, ref: Sources, A: torch.Tensor
) -> torch.Tensor:
    """Logits ``[K * n, p, V]`` of the prompts ``ids`` ([n, p]) under each of the ``K`` ablation matrices."""
    patcher = Patcher(lay, ref, A, ids.shape[0])
    rep = ids.repeat(A.shape[0], 1)
    return logits_of(model.run(rep, interventions=patcher.interventions()), "circuit discovery")
