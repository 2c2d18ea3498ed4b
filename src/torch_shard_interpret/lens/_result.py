"""LensResult: what the logit lens reads off every block, for one prompt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .._render import standalone
from ..core._errors import InputError
from ..core._result import jsonable
from ..core._tokens import str_tokens
from ..core._tokens import token_id as token_id_of
from ._html import lens_section_html


@dataclass
class LensResult:
    """Next-token distributions read from the residual stream after every block.

    ``probs[l, p]`` is the distribution the model would predict at position ``positions[p]`` if the
    residual stream of row ``l`` (``layer_names[l]``: after block ``l``, or the embeddings first when the
    lens was asked for them) went straight into the final norm and the unembedding.
    """

    probs: torch.Tensor
    """``[n_layers, pos, d_vocab]`` float32 probabilities (CPU); one more row first with ``include_embed``."""
    tokens: torch.Tensor
    """``[pos]`` the input token ids at those positions."""
    str_tokens: list[str]
    """The input tokens as strings (same length as ``tokens``)."""
    positions: list[int]
    """Absolute position of each column (all positions unless the lens was restricted)."""
    target: int | None = None
    """Token id that ``rank()`` / ``prob()`` use by default (``target=`` of ``logit_lens``)."""
    layer_names: list[str] = field(default_factory=list)
    """Site of each row, e.g. ``blocks.3.resid_post`` (``blocks.0.resid_pre`` for the embedding row)."""
    tokenizer: Any = field(default=None, repr=False)
    logits: torch.Tensor | None = field(default=None, repr=False)
    """``[n_layers, pos, d_vocab]`` float32 logits (CPU) with ``return_logits=True``, else ``None``."""

    @property
    def n_layers(self) -> int:
        """The number of rows (one per block, plus the embedding row when it was asked for)."""
        return self.probs.shape[0]

    @property
    def log_probs(self) -> torch.Tensor:
        """``[n_layers, pos, d_vocab]`` log-probabilities: ``log_softmax(logits)`` when the lens kept its
        logits, else ``log(probs)`` (the same up to float32 rounding, but ``-inf`` where a probability
        underflowed to 0; pass ``return_logits=True`` for exact tails). Computed on each access."""
        if self.logits is not None:
            return self.logits.log_softmax(-1)
        return self.probs.log()

    @property
    def hook_names(self) -> list[str]:
        """The TransformerLens hook name of each row: ``blocks.0.hook_resid_pre``, ``blocks.{i}.hook_resid_post``."""
        return [n.replace(".resid_pre", ".hook_resid_pre").replace(".resid_post", ".hook_resid_post")
                for n in self.layer_names]  # fmt: skip

    def _token(self, token_id: int | str | None) -> int:
        if token_id is None:
            if self.target is None:
                raise InputError(
                    "no token given and the lens has no target; pass a token id or target= to logit_lens"
                )
            return self.target
        if isinstance(token_id, str):
            return token_id_of(self.tokenizer, token_id)
        return int(token_id)

    def prob(self, token_id: int | str | None = None) -> torch.Tensor:
        """``[n_layers, pos]`` probability of ``token_id`` (default: the target)."""
        return self.probs[..., self._token(token_id)]

    def rank(self, token_id: int | str | None = None) -> torch.Tensor:
        """``[n_layers, pos]`` rank of ``token_id`` (0 = the lens's top token)."""
        p = self.prob(token_id)
        return (self.probs > p.unsqueeze(-1)).sum(-1)

    def top_ids(self, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """``(probs, ids)``, each ``[n_layers, pos, k]``, best first."""
        return self.probs.topk(k, dim=-1)

    def top_tokens(self, k: int = 5) -> list[list[list[tuple[str | int, float]]]]:
        """``[layer][pos]`` -> the ``k`` most likely (token, probability) pairs, best first.
        Tokens are strings when the model has a tokenizer, ids otherwise."""
        values, ids = self.top_ids(k)
        out: list[list[list[tuple[str | int, float]]]] = []
        for layer in range(values.shape[0]):
            row: list[list[tuple[str | int, float]]] = []
            for p in range(values.shape[1]):
                top = ids[layer, p]
                names = top.tolist() if self.tokenizer is None else str_tokens(self.tokenizer, top)
                row.append(list(zip(names, values[layer, p].tolist(), strict=True)))
            out.append(row)
        return out

    def to_dict(self, top_k: int = 5) -> dict[str, Any]:
        """JSON-safe: the rows (``layers``, and their TransformerLens ``hook_names``), the input ``tokens`` (``{"id", "text"}``), each cell's ``top_k``
        tokens (``top[layer][pos]``: ``{"token", "id", "prob"}``) and the heatmap ``value[layer][pos]``:
        the target's probability (with its ``rank``) when there is a target, else the top token's. The
        full ``[n_layers, pos, d_vocab]`` distribution and the logits stay out (use ``probs`` / ``logits``)."""
        vals, ids = self.top_ids(top_k)  # [n_layers, pos, k]
        top = [
            [
                [{"token": n, "id": i, "prob": p} for (n, p), i in zip(cell, cell_ids, strict=True)]
                for cell, cell_ids in zip(layer, layer_ids, strict=True)
            ]
            for layer, layer_ids in zip(self.top_tokens(top_k), ids.tolist(), strict=True)
        ]
        out: dict[str, Any] = {
            "layers": list(self.layer_names),
            "hook_names": self.hook_names,
            "positions": list(self.positions),
            "tokens": [
                {"id": i, "text": t} for i, t in zip(self.tokens.tolist(), self.str_tokens, strict=True)
            ],
            "top": top,
            "value": vals[..., 0],
            "value_label": "probability of the lens's top token",
            "target": None,
        }
        if self.target is not None:
            token = self.target if self.tokenizer is None else str_tokens(self.tokenizer, [self.target])[0]
            out["target"] = {"token": token, "id": self.target}
            out["value"] = self.prob()
            out["rank"] = self.rank()
            out["value_label"] = f"probability of {token!r}"
        return jsonable(out)

    def to_html(self, token_id: int | str | None = None, mode: str = "prob") -> str:
        """A self-contained HTML heatmap (layers x positions): cells coloured by the probability (``mode="prob"``)
        or rank (``"rank"``) of ``token_id`` (default: the target, else each position's final prediction),
        labelled with the lens's top token; hover a cell for its top 5."""
        return standalone("Logit lens", lens_section_html(self, token_id, modes=(mode,)))

    def _repr_html_(self) -> str:
        return self.to_html()
