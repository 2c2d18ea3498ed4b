"""Known circuits: two-layer GPT-2s whose weights are set by hand to run a known algorithm, plus decoys.

The residual stream (``d_model = 64``) is split into subspaces: the current token (one-hot, 16 dims), the
position (one-hot, 8), the previous token (16), the answer (16) and a scratch space (8) that only decoys use.

- ``"prev_token"``: head ``a0.h0`` attends from each position to the one before it and copies that token
  into the previous-token subspace; the unembedding reads it. The model predicts the previous token.
- ``"induction"``: ``a0.h0`` as above, then ``a1.h0`` attends from the last token ``x`` to the position
  whose *previous* token is ``x`` and copies the token there into the answer subspace: ``... x y ... x -> y``.

Every other head and both MLPs are decoys: random weights that read the whole stream and write only into
the scratch space, which nothing of the circuit reads (they touch the output only through the norms).
Being a real Hugging Face GPT-2, the model gets every canonical site (``blocks.{i}.attn.z`` per head,
``blocks.{i}.mlp.out``...) from the GPT-2 adapter; ``.circuit`` uses MIB node names (``a{L}.h{H}``, ``m{L}``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch

from ..core._errors import InputError

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

V, T, D, H = 16, 8, 64, 4
HD = D // H
TOK, POS, PREV, ANS, SCRATCH = 0, V, V + T, 2 * V + T, 3 * V + T
NAMES = ("prev_token", "induction")
ALGORITHMS = ("counting", "reversal", "sorting")  # built in _algorithmic.py


@dataclass
class KnownCircuit:
    """``.model`` (a ``tsi.Model``), ``.clean``/``.corrupt`` ids ``[1, T]``, ``.metric(logits) -> [batch]``,
    ``.circuit`` (true MIB node names), ``.nodes`` (every candidate node), ``.edges`` (true edges)."""

    name: str
    model: Any
    clean: torch.Tensor
    corrupt: torch.Tensor
    answer: int
    wrong: int | None
    """The corrupt prompt's answer (None: the metric subtracts the mean logit instead)."""
    circuit: set[str]
    nodes: list[str] = field(default_factory=list)
    edges: set[str] = field(default_factory=set)
    direct: set[str] = field(default_factory=set)
    """The true nodes that write to the logits themselves (what DLA can see)."""
    revealed: set[str] = field(default_factory=set)
    """The true edges whose input differs between clean and corrupt (what counterfactual methods can see)."""

    def metric(self, logits: torch.Tensor) -> torch.Tensor:
        """Logit of the right answer minus the corrupt prompt's answer (or the mean logit), last position."""
        last = logits[:, -1]
        other = last.mean(-1) if self.wrong is None else last[:, self.wrong]
        return last[:, self.answer] - other


def gpt2_blocks(model: GPT2LMHeadModel) -> Sequence[GPT2Block]:
    """``model.transformer.h``: HF annotates it as an ``nn.ModuleList`` of ``nn.Module``, it holds GPT2Blocks."""
    return cast("Sequence[GPT2Block]", model.transformer.h)


def blank_gpt2(vocab: int, positions: int, d_model: int, n_head: int, seed: int):
    """A two-layer ReLU ``GPT2LMHeadModel`` (eval mode) with every weight zero and every norm's scale 1."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab, n_positions=positions, n_embd=d_model, n_layer=2, n_head=n_head,
        n_inner=4 * d_model, activation_function="relu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=False, layer_norm_epsilon=1e-5, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    tr, blocks = model.transformer, gpt2_blocks(model)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for ln in [tr.ln_f] + [b.ln_1 for b in blocks] + [b.ln_2 for b in blocks]:
            ln.weight.fill_(1.0)
    return model


def build_module(name: str, seed: int = 0, sharp: float = 40.0, decoy_scale: float = 0.3):
    """The hand-set ``GPT2LMHeadModel`` of task ``name``."""
    if name not in NAMES:
        raise InputError(f"unknown known circuit {name!r}; choose one of {', '.join(NAMES + ALGORITHMS)}")
    model = blank_gpt2(V, T, D, H, seed)
    g = torch.Generator().manual_seed(seed + 1)
    tr, blocks = model.transformer, gpt2_blocks(model)
    with torch.no_grad():
        tr.wte.weight[:, TOK : TOK + V] = torch.eye(V)
        tr.wpe.weight[:, POS : POS + T] = torch.eye(T)
        # a0.h0, previous token: query position i matches key position i - 1; value = the token
        a0 = blocks[0].attn
        for i in range(1, T):
            a0.c_attn.weight[POS + i, 0 * HD + i] = sharp  # q
            a0.c_attn.weight[POS + i - 1, D + 0 * HD + i] = 1.0  # k
        a0.c_attn.weight[TOK : TOK + V, 2 * D : 2 * D + V] = torch.eye(V)  # v (HD == V)
        a0.c_proj.weight[0:V, PREV : PREV + V] = torch.eye(V)
        if name == "induction":  # a1.h0: query = current token, key = previous-token subspace; value = token
            a1 = blocks[1].attn
            a1.c_attn.weight[TOK : TOK + V, 0:V] = sharp * torch.eye(V)
            a1.c_attn.weight[PREV : PREV + V, D : D + V] = torch.eye(V)
            a1.c_attn.weight[TOK : TOK + V, 2 * D : 2 * D + V] = torch.eye(V)
            a1.c_proj.weight[0:V, ANS : ANS + V] = torch.eye(V)
            model.lm_head.weight[:, ANS : ANS + V] = torch.eye(V)
        else:
            model.lm_head.weight[:, PREV : PREV + V] = torch.eye(V)
        # decoys: heads 1..3 of both layers and both MLPs read everything and write only the scratch space
        n_scratch = D - SCRATCH
        for block in blocks:
            for h in range(1, H):
                for part in range(3):
                    block.attn.c_attn.weight[:, part * D + h * HD : part * D + (h + 1) * HD] = torch.randn(
                        D, HD, generator=g
                    ) / math.sqrt(D)
                block.attn.c_proj.weight[h * HD : (h + 1) * HD, SCRATCH:] = (
                    decoy_scale * torch.randn(HD, n_scratch, generator=g) / math.sqrt(HD)
                )
            block.mlp.c_fc.weight.copy_(torch.randn(D, 4 * D, generator=g) / math.sqrt(D))
            block.mlp.c_fc.bias.copy_(0.1 * torch.randn(4 * D, generator=g))
            block.mlp.c_proj.weight[:, SCRATCH:] = (
                decoy_scale * torch.randn(4 * D, n_scratch, generator=g) / math.sqrt(4 * D)
            )
    return model


def known_circuit(name: str = "induction", seed: int = 0, decoy_scale: float = 0.3) -> KnownCircuit:
    """A hand-built transformer with a known circuit: ``"prev_token"`` or ``"induction"`` (see module docs),
    ``"counting"``, ``"reversal"`` or ``"sorting"`` (see ``_algorithmic.py``). ``decoy_scale``: how much the
    decoys write into the scratch space (larger: they move the norms' scale, and so the logits, more)."""
    import torch_shard_interpret as tsi

    if not (isinstance(decoy_scale, (int, float)) and decoy_scale >= 0):
        raise InputError(f"decoy_scale must be a number >= 0, not {decoy_scale!r}")
    if name in ALGORITHMS:
        return _algorithm(name, seed, float(decoy_scale))
    module = build_module(name, seed, decoy_scale=float(decoy_scale))
    g = torch.Generator().manual_seed(seed + 2)
    toks = torch.randperm(V, generator=g)
    seq = toks[:T].clone()
    spare = int(toks[T])  # a token that is not in the sequence
    if name == "induction":
        r = 2
        seq[-1] = seq[r]  # ... x y ... x  -> y
        clean, corrupt = seq.clone(), seq.clone()
        corrupt[r] = spare  # the earlier x is gone: nothing to induct from
        answer, wrong = int(seq[r + 1]), None
        circuit = {"a0.h0", "a1.h0"}
        edges = {"input->a0.h0<q>", "input->a0.h0<k>", "input->a0.h0<v>", "a0.h0->a1.h0<k>", "input->a1.h0<q>",
                 "input->a1.h0<v>", "a1.h0->logits"}  # fmt: skip
    else:
        clean, corrupt = seq.clone(), seq.clone()
        corrupt[-2] = spare
        answer, wrong = int(seq[-2]), spare
        circuit = {"a0.h0"}
        edges = {"input->a0.h0<q>", "input->a0.h0<k>", "input->a0.h0<v>", "a0.h0->logits"}
    nodes = [f"a{layer}.h{h}" for layer in range(2) for h in range(H)] + ["m0", "m1"]
    model = tsi.wrap(module)
    direct = {"a0.h0"} if name == "prev_token" else {"a1.h0"}
    return KnownCircuit(
        name, model, clean.view(1, T), corrupt.view(1, T), answer, wrong, circuit, nodes, edges, direct
    )


def _algorithm(name: str, seed: int, decoy_scale: float) -> KnownCircuit:
    import torch_shard_interpret as tsi

    from . import _algorithmic as alg
    from ._algorithmic_prompts import pair

    clean, corrupt, answer, wrong = pair(name, torch.Generator().manual_seed(seed + 2))
    heads = {f"a{layer}.h{h}" for layer, h in alg.TRUE_HEADS[name]}
    circuit = heads | {f"m{layer}" for layer in alg.TRUE_MLPS[name]}
    nodes = [f"a{layer}.h{h}" for layer in range(2) for h in range(alg.H)] + ["m0", "m1"]
    model = tsi.wrap(alg.build_module(name, seed, decoy_scale=decoy_scale))
    return KnownCircuit(
        name, model, torch.tensor([clean]), torch.tensor([corrupt]), answer, wrong, circuit, nodes,
        set(alg.EDGES[name]), set(alg.DIRECT[name]), set(alg.REVEALED[name]),
    )  # fmt: skip
