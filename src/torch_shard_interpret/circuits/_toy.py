"""A hand-built tiny LLaMA whose only working path is known: for tests and the ground-truth check.

Two layers, four query heads sharing two KV heads. Every attention output projection is zero except head 1
of layer 0, and layer 0's MLP writes nothing, so only ``input``, ``a0.h1`` and ``m1`` write to the residual.
The true circuit is every edge between them (and the logits) that reaches the logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch

if TYPE_CHECKING:
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    from ..core._model import Model

TRUE_EDGES = (
    "input->a0.h1<q>",
    "input->a0.kv0<k>",
    "input->a0.kv0<v>",
    "input->m1",
    "a0.h1->m1",
    "input->logits",
    "a0.h1->logits",
    "m1->logits",
)


@dataclass
class ToyCircuit:
    model: Model
    clean: torch.Tensor
    corrupt: torch.Tensor
    metric: Any
    edges: tuple[str, ...] = TRUE_EDGES


def toy_circuit(seed: int = 0, n: int = 4, pos: int = 6) -> ToyCircuit:
    from transformers import LlamaConfig, LlamaForCausalLM

    from .._wrap import wrap

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        initializer_range=0.5,
    )
    module = LlamaForCausalLM(cfg).eval()
    layers = cast("Sequence[LlamaDecoderLayer]", module.model.layers)  # HF's annotations say nn.Module
    with torch.no_grad():
        head = 16 // 4
        w = layers[0].self_attn.o_proj.weight
        keep = w[:, head : 2 * head].clone()
        w.zero_()
        w[:, head : 2 * head] = keep
        layers[1].self_attn.o_proj.weight.zero_()
        layers[0].mlp.down_proj.weight.zero_()
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, 32, (n, pos), generator=gen)
    corrupt = torch.randint(0, 32, (n, pos), generator=gen)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[:, -1, 1] - logits[:, -1, 2]

    return ToyCircuit(wrap(module), clean, corrupt, metric)


def auroc(scores: torch.Tensor, truth: torch.Tensor) -> float:
    """Area under the ROC curve of ``|scores|`` separating ``truth`` (bool) edges from the rest (ties count half)."""
    s = torch.nan_to_num(scores.abs().double(), nan=0.0)
    pos, neg = s[truth], s[~truth]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).double().sum()
    ties = (pos[:, None] == neg[None, :]).double().sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))
