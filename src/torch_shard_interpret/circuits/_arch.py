"""Where a model's graph lives: the modules that compute each destination input and each head's output.

Built from the adapter's block roles plus the attention module's own q/k/v projections, found by name
(separate ``q_proj``/``k_proj``/``v_proj`` or ``query``/``key``/``value``, or a fused ``[q | k | v]``
projection such as GPT-2's ``c_attn``). Each head's write to the residual stream uses the output
projection's columns, read once by calling the projection on the identity (so it also works when accelerate
keeps the weights offloaded until the module runs).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ._graph import CircuitError, Graph

if TYPE_CHECKING:
    from ..core._model import Model

_SEPARATE = (("q_proj", "k_proj", "v_proj"), ("query", "key", "value"), ("q", "k", "v"), ("wq", "wk", "wv"))
_FUSED = ("c_attn", "qkv_proj", "Wqkv", "qkv")


@dataclass
class Proj:
    """One linear module producing some of the q/k/v inputs: ``parts`` are ``(kind, column offset, heads)``."""

    path: str
    module: nn.Module
    parts: list[tuple[str, int, int]]


@dataclass
class LayerParts:
    ln1: str  # path of the norm in front of attention
    mlp_norm: str  # path of the norm in front of the MLP
    mlp: str  # path of the MLP module (its input is the MLP destination)
    projs: list[Proj]
    o_proj: nn.Module


@dataclass
class Layout:
    graph: Graph
    d_head: int
    layers: list[LayerParts]
    final_norm: str
    unembed: str
    modules: dict[str, nn.Module]
    _w_o: dict[int, torch.Tensor]
    _w_in: dict[str, torch.Tensor] = field(default_factory=dict)

    def module(self, path: str) -> nn.Module:
        return self.modules[path]

    def w_o(self, layer: int, like: torch.Tensor) -> torch.Tensor:
        """``[n_heads, d_head, d_model]``: what one unit of each head's ``z`` writes to the residual."""
        o, width = self.layers[layer].o_proj, self.graph.n_heads * self.d_head
        w = _linear_weight(o, width)
        if w is None:
            w = self._w_o.get(layer)
            if w is None:
                w = _jacobian(o, width, like).T
                self._w_o[layer] = w
        return w.T.reshape(self.graph.n_heads, self.d_head, -1).to(device=like.device, dtype=like.dtype)

    def w_in(self, proj: Proj, d_in: int, like: torch.Tensor) -> torch.Tensor:
        """``[out, d_in]``: the Jacobian of a q/k/v projection (affine, so the same at every input)."""
        w = _linear_weight(proj.module, d_in)
        if w is None:
            w = self._w_in.get(proj.path)
            if w is None:
                w = self._w_in[proj.path] = _jacobian(proj.module, d_in, like).T.contiguous()
        return w.to(device=like.device, dtype=like.dtype)


def _linear_weight(module: nn.Module, d_in: int) -> torch.Tensor | None:
    """A plain ``nn.Linear``'s own ``[out, d_in]`` weight (a view, no copy), or None where it is kept elsewhere
    (offloaded to meta, quantized, another kind of module): then the Jacobian is read by calling the module."""
    w = getattr(module, "weight", None)
    if not isinstance(module, nn.Linear) or not isinstance(w, torch.Tensor) or w.device.type == "meta":
        return None
    w = _full(w).detach()
    return w if w.ndim == 2 and w.shape[1] == d_in else None


def _jacobian(module: nn.Module, d_in: int, like: torch.Tensor) -> torch.Tensor:
    """``[d_in, out]``: the module (affine) called on the identity, less its value at zero (so it also works when
    accelerate keeps the weights offloaded until the module runs)."""
    eye = torch.eye(d_in, dtype=like.dtype, device=like.device)
    with torch.no_grad():
        return call(module, eye) - call(module, torch.zeros(1, d_in, dtype=like.dtype, device=like.device))


_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _full(t: Any) -> Any:
    return t.detach().full_tensor() if type(t).__name__ == "DTensor" else t


def call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` with the full output, also for a tensor-parallel linear (DTensor weights), whose own forward
    would give this rank's slice: there the full weights are gathered and applied (same result on every rank)."""
    w = getattr(module, "weight", None)
    if isinstance(module, nn.Linear) and type(w).__name__ == "DTensor":
        return torch.nn.functional.linear(x, _full(w), _full(module.bias))
    return module(x)


def layout(model: Model, graph: Graph) -> Layout:
    """The (cached) layout of ``model``."""
    found = _LAYOUTS.get(model.module)
    if found is not None and found.graph.edges == graph.edges:
        return found
    paths = {id(m): n for n, m in model.module.named_modules()}
    modules = dict(model.module.named_modules())
    cfg = model.cfg
    d_head = cfg.d_head
    if not d_head:
        if not cfg.d_model or not cfg.n_heads:
            raise CircuitError(
                "circuits need the model's head width: its config gives neither d_head nor d_model and n_heads"
            )
        d_head = cfg.d_model // cfg.n_heads
    layers = []
    for i in range(graph.n_layers):
        parts = model.block_modules(i)
        attn, mlp, ln1, ln2, o_proj = parts["attn"], parts["mlp"], parts["ln1"], parts["ln2"], parts["o_proj"]
        if mlp is None or ln1 is None or attn is None or o_proj is None:
            raise CircuitError(
                f"block {i} has no separate attention (with its output projection), MLP and pre-attention norm "
                "modules the adapter can name, so "
                "its edges cannot be patched; circuits support pre-norm blocks with an MLP module"
            )
        mlp_norm = ln2 if ln2 is not None else ln1  # parallel blocks may share one norm (GPT-J)
        layers.append(
            LayerParts(
                ln1=paths[id(ln1)],
                mlp_norm=paths[id(mlp_norm)],
                mlp=paths[id(mlp)],
                projs=_projections(attn, paths, graph, d_head, i),
                o_proj=o_proj,
            )
        )
    adapter = model.adapter
    final = _absolute(model, adapter.final_norm) if adapter is not None else None
    unembed = _absolute(model, adapter.unembed) if adapter is not None else None
    if final is None or unembed is None:
        raise CircuitError(
            "circuits need the model's final norm and unembedding, which the adapter does not name"
        )
    out = Layout(graph, d_head, layers, final, unembed, modules, {})
    _LAYOUTS[model.module] = out
    return out


def _absolute(model: Model, path: str | None) -> str | None:
    if path is None:
        return None
    from ..adapters._base import find_module  # names only: adapters sit below techniques

    found = find_module(model.module, path)
    return None if found is None else found[0]


def _projections(attn: nn.Module, paths: dict[int, str], graph: Graph, d_head: int, layer: int) -> list[Proj]:
    children = dict(attn.named_children())
    H, G = graph.n_heads, graph.n_kv_heads
    for names in _SEPARATE:
        if all(n in children for n in names):
            return [
                Proj(paths[id(children[n])], children[n], [(kind, 0, heads)])
                for n, kind, heads in zip(names, "qkv", (H, G, G), strict=True)
            ]
    for name in _FUSED:
        if name in children:
            m = children[name]
            return [Proj(paths[id(m)], m, [("q", 0, H), ("k", H * d_head, G), ("v", (H + G) * d_head, G)])]
    raise CircuitError(
        f"layer {layer}'s attention has no q/k/v projections named like {_SEPARATE[0]} or a fused {_FUSED[0]}, so its "
        "query, key and value inputs cannot be told apart; this architecture is not supported by circuits yet"
    )
