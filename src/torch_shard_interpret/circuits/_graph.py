"""The computational graph of a transformer in MIB names: sources, destinations and the edges between them.

Sources write to the residual stream: ``input`` (the embedding), every attention head ``a{L}.h{H}`` and
every MLP ``m{L}``. Destinations read from it: each head's query, key and value inputs
(``a{L}.h{H}<q>``; with grouped-query attention the key and value inputs belong to the shared KV head,
``a{L}.kv{G}<k>``), each MLP input ``m{L}`` and ``logits``. An edge ``src->dst`` exists whenever the source
writes to the residual upstream of the destination's input (sequential blocks: ``a{L}`` feeds ``m{L}``;
parallel blocks: it does not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..core._errors import TsiError

if TYPE_CHECKING:
    from ..core._model import Model


class CircuitError(TsiError, ValueError):
    """A circuit technique cannot run with these inputs or on this model."""


@dataclass
class Graph:
    """Nodes, destinations and edges of one model shape (no weights: build it from ``model.cfg`` or a file)."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    parallel: bool = False
    d_model: int | None = None
    sources: list[str] = field(init=False)
    dests: list[str] = field(init=False)
    edges: list[str] = field(init=False)

    def __post_init__(self) -> None:
        if self.n_heads % self.n_kv_heads:
            raise CircuitError(
                f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}; give the model's real shape"
            )
        H, L = self.n_heads, self.n_layers
        self.sources = ["input"]
        src_stage = [0]
        for layer in range(L):
            self.sources += [f"a{layer}.h{h}" for h in range(H)] + [f"m{layer}"]
            src_stage += [2 * layer + 1] * H + [2 * layer + 2]
        self.dests, dst_stage = [], []
        for layer in range(L):
            names = self.qkv_dests(layer)
            self.dests += names + [f"m{layer}"]
            dst_stage += [2 * layer + 1] * len(names) + [2 * layer + (1 if self.parallel else 2)]
        self.dests.append("logits")
        dst_stage.append(2 * L + 1)
        s = torch.tensor(src_stage)
        d = torch.tensor(dst_stage)
        self.upstream = s[:, None] < d[None, :]  # [S, D]: source s feeds destination d
        self.edge_src, self.edge_dst = self.upstream.nonzero(as_tuple=True)
        self.edges = [
            f"{self.sources[i]}->{self.dests[j]}"
            for i, j in zip(self.edge_src.tolist(), self.edge_dst.tolist(), strict=True)
        ]
        self.index = {e: i for i, e in enumerate(self.edges)}

    # ---- names --------------------------------------------------------------------------------
    @property
    def grouped(self) -> bool:
        return self.n_kv_heads != self.n_heads

    def kv_name(self, layer: int, g: int) -> str:
        return f"a{layer}.kv{g}" if self.grouped else f"a{layer}.h{g}"

    def qkv_dests(self, layer: int) -> list[str]:
        q = [f"a{layer}.h{h}<q>" for h in range(self.n_heads)]
        k = [f"{self.kv_name(layer, g)}<k>" for g in range(self.n_kv_heads)]
        v = [f"{self.kv_name(layer, g)}<v>" for g in range(self.n_kv_heads)]
        return q + k + v

    @property
    def nodes(self) -> list[str]:
        """Every node in MIB names: input, heads and MLPs in forward order, logits."""
        return [*self.sources, "logits"]

    def dest_index(self, layer: int) -> dict[str, list[int]]:
        """Positions in ``dests`` of layer ``layer``'s q, k, v and MLP destinations."""
        per = self.n_heads + 2 * self.n_kv_heads + 1
        base = layer * per
        H, G = self.n_heads, self.n_kv_heads
        return {
            "q": list(range(base, base + H)),
            "k": list(range(base + H, base + H + G)),
            "v": list(range(base + H + G, base + H + 2 * G)),
            "m": [base + H + 2 * G],
        }

    def source_slice(self, what: str, layer: int = 0) -> slice:
        """Positions in ``sources`` of ``input``, of layer ``layer``'s heads (``"a"``) or of its MLP (``"m"``)."""
        if what == "input":
            return slice(0, 1)
        base = 1 + layer * (self.n_heads + 1)
        return (
            slice(base, base + self.n_heads)
            if what == "a"
            else slice(base + self.n_heads, base + self.n_heads + 1)
        )

    def dest_node(self, dst: str) -> str:
        """The node a destination belongs to (``a3.h1<q>`` -> ``a3.h1``; a KV head maps to its first query head)."""
        name = dst.split("<", 1)[0]
        if ".kv" in name:
            layer, g = name[1:].split(".kv")
            return f"a{layer}.h{int(g) * (self.n_heads // self.n_kv_heads)}"
        return name

    def dest_nodes(self, dst: str) -> list[str]:
        """Every node a destination feeds (a shared KV head feeds all query heads of its group)."""
        name = dst.split("<", 1)[0]
        if ".kv" in name:
            layer, g = name[1:].split(".kv")
            per = self.n_heads // self.n_kv_heads
            return [f"a{layer}.h{int(g) * per + i}" for i in range(per)]
        return [name]

    # ---- files --------------------------------------------------------------------------------
    def cfg(self) -> dict[str, Any]:
        """The ``cfg`` block of an MIB circuit file."""
        out: dict[str, Any] = {
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "parallel_attn_mlp": self.parallel,
            "d_model": self.d_model,
        }
        if self.grouped:
            out["n_key_value_heads"] = self.n_kv_heads
        return out

    @classmethod
    def from_cfg(cls, cfg: dict[str, Any]) -> Graph:
        try:
            return cls(
                n_layers=int(cfg["n_layers"]),
                n_heads=int(cfg["n_heads"]),
                n_kv_heads=int(cfg.get("n_key_value_heads") or cfg["n_heads"]),
                parallel=bool(cfg.get("parallel_attn_mlp", False)),
                d_model=cfg.get("d_model"),
            )
        except KeyError as e:
            raise CircuitError(
                f"the circuit file's cfg lacks {e.args[0]!r}; it needs n_layers and n_heads"
            ) from None

    def __repr__(self) -> str:
        return (
            f"tsi.circuits.Graph({self.n_layers} layers x {self.n_heads} heads"
            f"{f' ({self.n_kv_heads} KV)' if self.grouped else ''}, {len(self.nodes)} nodes, {len(self.edges)} edges"
            f"{', parallel blocks' if self.parallel else ''})"
        )


def graph(model: Model) -> Graph:
    """The edge graph of ``model`` (a ``tsi.Model`` with an adapter), in MIB node names."""
    cfg = model.cfg
    if not cfg.n_layers or not cfg.n_heads:
        raise CircuitError(
            "circuits need a model with an adapter that knows n_layers and n_heads; wrap a supported architecture"
        )
    if cfg.block_style == "post_norm":
        raise CircuitError(
            "this model normalises attention and MLP outputs after the block (post-norm), so the residual stream is "
            "not a sum of head and MLP outputs and edges are not defined; use a pre-norm model"
        )
    return Graph(
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        n_kv_heads=cfg.n_kv_heads or cfg.n_heads,
        parallel=cfg.block_style == "parallel",
        d_model=cfg.d_model,
    )
