"""A planted concept: a small language model with one known linear "sentiment" direction ``u``.

A seeded random two-layer Llama (``tsi.testing.tiny_hf_model``) with its word-level tokenizer, changed in
two places: the embeddings of positive words get ``+strength * u`` and of negative words ``-strength * u``
(the concept is *written* along ``u``), and the unembedding rows of ``yes``/``no`` get ``+/- readout * u``
(the concept is *read* along ``u``, through the final norm). Truth: ``u``, at every residual site.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

if TYPE_CHECKING:
    from ..core._model import Model

POSITIVE = ("good", "happy", "love", "great")
NEGATIVE = ("bad", "sad", "hate", "terrible")
NEUTRAL = ("the", "cat", "dog", "house", "tree", "car", "book", "red", "blue", "green", "city", "store")


@dataclass
class PlantedConcept:
    model: Model
    direction: torch.Tensor
    """``[d_model]`` unit vector: the planted concept."""
    positive_texts: list[str]
    negative_texts: list[str]
    neutral_texts: list[str]

    def readout(self, logits: torch.Tensor) -> torch.Tensor:
        """``logit(yes) - logit(no)`` at the last position: the planted read-out of the concept."""
        yes, no = self.model.token_id(" yes"), self.model.token_id(" no")
        return logits[:, -1, yes] - logits[:, -1, no]


def _texts(words, gen, n) -> list[str]:
    out = []
    for _ in range(n):
        a, b = (NEUTRAL[int(i)] for i in torch.randint(len(NEUTRAL), (2,), generator=gen))
        w = words[int(torch.randint(len(words), (1,), generator=gen))]
        out.append(f"{a} {b} {w}")
    return out


def planted_concept(seed: int = 0, strength: float = 3.0, readout: float = 20.0) -> PlantedConcept:
    import torch_shard_interpret as tsi
    from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

    tok = tiny_tokenizer()
    module = tiny_hf_model("llama", seed=seed)
    gen = torch.Generator().manual_seed(seed + 5)
    emb = cast(nn.Embedding, module.get_input_embeddings()).weight  # HF annotates both as nn.Module
    d = emb.shape[1]
    u = torch.randn(d, generator=gen)
    u = u / u.norm()
    scale = float(emb.detach().norm(dim=1).mean())
    with torch.no_grad():
        for words, sign in ((POSITIVE, 1.0), (NEGATIVE, -1.0)):
            for w in words:
                emb[tok.convert_tokens_to_ids(w)] += sign * strength * scale * u
        head = cast(nn.Linear, module.get_output_embeddings()).weight
        head[tok.convert_tokens_to_ids("yes")] += readout * u
        head[tok.convert_tokens_to_ids("no")] -= readout * u
    model = tsi.wrap(module, tokenizer=tok)
    return PlantedConcept(
        model, u, _texts(POSITIVE, gen, 24), _texts(NEGATIVE, gen, 24),
        [" ".join(NEUTRAL[int(i)] for i in torch.randint(len(NEUTRAL), (3,), generator=gen)) for _ in range(24)],
    )  # fmt: skip
