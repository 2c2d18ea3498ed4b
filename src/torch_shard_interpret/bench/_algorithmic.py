"""Known circuits for counting, reversal and sorting: two-layer GPT-2s set by hand, RASP-style, plus decoys.

The residual stream (``d_model = 128``, 16 positions, vocabulary 16: ``0`` = BOS, ``1`` = SEP, ``2..15``
symbols; counting also uses ``1`` as a symbol) is split into subspaces: token and position (one-hot), a
constant ``ONE`` (value ``C``) and an always-empty ``ZERO`` dimension, the count ``CNT``, the separator's
position ``SEPPOS``, a target position ``TARGET``, the answer ``ANS`` and a scratch space for decoys. Every
true weight reads "dimension minus ZERO", which cancels the layer norms' mean exactly; what is left of a
layer norm is one positive scale per position, under which every true read is homogeneous, so the argmax
of the logits does not depend on it (and the decoys reach the logits only through that scale).

- ``"counting"`` (RASP ``selector_width(select(tokens, tokens, ==))``, a histogram): head ``a0.h2`` attends
  from each position to BOS and to every earlier copy of its own token, equally, so the weight on BOS is
  ``1/(c+1)`` and its value (BOS's flag) writes that into ``CNT``; MLP ``m0`` reads it out as the count
  ``c`` (the logit of token id ``c``): pairs of ReLUs compute the lines tangent to ``1/x`` at
  ``x = 1/(c+1)``, whose maximum at ``x`` is the line of the nearest count.
- ``"reversal"``: ``BOS x1..xn SEP y1..yn`` with ``y = reversed(x)``. ``a0.h1`` attends to SEP and copies
  its position into ``SEPPOS``; ``m0`` turns (SEP position ``s``, own position ``p``) into the one-hot
  target ``2s-1-p`` (one ReLU per pair, the position arithmetic); ``a1.h3`` attends to that position and
  copies its token into ``ANS``. Each position from SEP on predicts the next output token.
- ``"sorting"``: ``BOS x1..xn SEP z1..zn`` with ``z`` the distinct ``x`` ascending. ``a1.h1`` attends from
  the current token ``t`` (SEP counts as below every symbol) to the smallest input token above ``t``
  (score ``A*[u > t] - B*u``) and copies it into ``ANS``.
"""

from __future__ import annotations

import math

import torch

V, T, D, H = 16, 16, 128, 4
HD = D // H
BOS, SEP = 0, 1
TOK, POS, ONE, ZERO, CNT = 0, 16, 32, 33, 34
SEPPOS, TARGET, ANS, SCRATCH = 35, 51, 67, 96
C = 16.0
NAMES = ("counting", "reversal", "sorting")
TRUE_HEADS = {"counting": {(0, 2)}, "reversal": {(0, 1), (1, 3)}, "sorting": {(1, 1)}}
TRUE_MLPS = {"counting": {0}, "reversal": {0}, "sorting": set()}
EDGES = {
    "counting": {"input->a0.h2<q>", "input->a0.h2<k>", "input->a0.h2<v>", "a0.h2->m0", "input->m0",
                 "m0->logits"},
    "reversal": {"input->a0.h1<q>", "input->a0.h1<k>", "input->a0.h1<v>", "a0.h1->m0", "input->m0",
                 "m0->a1.h3<q>", "input->a1.h3<k>", "input->a1.h3<v>", "a1.h3->logits"},
    "sorting": {"input->a1.h1<q>", "input->a1.h1<k>", "input->a1.h1<v>", "a1.h1->logits"},
}  # fmt: skip
REVEALED = {  # the true edges whose input differs between the task's clean and corrupt prompts
    "counting": {"input->a0.h2<k>", "a0.h2->m0", "m0->logits"},
    "reversal": {"input->a0.h1<k>", "a0.h1->m0", "m0->a1.h3<q>", "a1.h3->logits"},
    "sorting": {"input->a1.h1<k>", "input->a1.h1<v>", "a1.h1->logits"},
}
DIRECT = {"counting": {"m0"}, "reversal": {"a1.h3"}, "sorting": {"a1.h1"}}


def _read(w: torch.Tensor, dim: int, col: int, value: float) -> None:
    """``w[:, col]`` reads ``value * (x[dim] - x[ZERO])`` of the normed stream (the norm's mean cancels)."""
    w[dim, col] += value
    w[ZERO, col] -= value


def _sigma0() -> float:
    """The layer norm's scale of any embedding (one token, one position, ``ONE``): the same everywhere."""
    x = torch.zeros(D)
    x[TOK], x[POS], x[ONE] = 1.0, 1.0, C
    return float(x.std(unbiased=False))


def _head_cols(h: int, part: int) -> int:
    return part * D + h * HD


def _counting(tr, score: float, gain: float) -> None:
    s0, a = _sigma0(), tr.h[0].attn
    sharp = score * s0 * s0 * math.sqrt(HD)
    q, k, v = _head_cols(2, 0), _head_cols(2, 1), _head_cols(2, 2)
    for t in range(V):  # q . k = [same token] + [key is BOS], so BOS and every copy weigh the same
        _read(a.c_attn.weight, TOK + t, k + t, 1.0)
        if t == BOS:
            _read(a.c_attn.weight, ONE, q + t, sharp / C)
        else:
            _read(a.c_attn.weight, TOK + t, q + t, sharp)
    _read(a.c_attn.weight, TOK + BOS, v, 1.0)  # value: the BOS flag; CNT = 1 / (c + 1)
    a.c_proj.weight[2 * HD, CNT] = s0
    fc, proj = tr.h[0].mlp.c_fc.weight, tr.h[0].mlp.c_proj.weight
    for c in range(1, T):  # line tangent to 1/x at 1/(c+1): 2(c+1) - (c+1)^2 x, as relu(+) - relu(-)
        for sign, unit in ((1.0, 2 * c), (-1.0, 2 * c + 1)):
            _read(fc, ONE, unit, sign * 2 * (c + 1) / C)
            _read(fc, CNT, unit, -sign * (c + 1) ** 2)
            proj[unit, ANS + c] = sign / 16  # small next to ONE, so that ln_f's scale stays put


def _reversal(tr, score: float, gain: float) -> None:
    s0 = _sigma0()
    sharp = score * s0 * s0 * math.sqrt(HD)
    a0 = tr.h[0].attn  # a0.h1: attend to SEP (to BOS before it), copy its position into SEPPOS
    q, k, v = _head_cols(1, 0), _head_cols(1, 1), _head_cols(1, 2)
    _read(a0.c_attn.weight, ONE, q, sharp / C)
    _read(a0.c_attn.weight, TOK + SEP, k, 1.0)
    _read(a0.c_attn.weight, TOK + BOS, k, 0.5)
    for p in range(T):
        _read(a0.c_attn.weight, POS + p, v + p, 1.0)
        a0.c_proj.weight[HD + p, SEPPOS + p] = s0
    fc, proj = tr.h[0].mlp.c_fc.weight, tr.h[0].mlp.c_proj.weight
    unit = 0
    for s in range(2, T // 2 + 1):  # m0: (SEP at s, self at p >= s) -> TARGET 2s - 1 - p
        for p in range(s, 2 * s - 1):
            _read(fc, SEPPOS + s, unit, 1.0)
            _read(fc, POS + p, unit, 1.0)
            _read(fc, ONE, unit, -1.5 / C)
            proj[unit, TARGET + 2 * s - 1 - p] = 2.0 * s0
            unit += 1
    a1 = tr.h[1].attn  # a1.h3: query TARGET, key position, value token -> ANS
    q, k, v = _head_cols(3, 0), _head_cols(3, 1), _head_cols(3, 2)
    for p in range(T):
        _read(a1.c_attn.weight, TARGET + p, q + p, sharp)
        _read(a1.c_attn.weight, POS + p, k + p, 1.0)
        _read(a1.c_attn.weight, TOK + p, v + p, 1.0)
        a1.c_proj.weight[3 * HD + p, ANS + p] = gain


def _sorting(tr, score: float, gain: float) -> None:
    s0 = _sigma0()
    sharp = score * s0 * s0 * math.sqrt(HD)
    a1 = tr.h[1].attn  # a1.h1: q[u] = A [u > t] - B u for the current token t; k = token; v = token
    q, k, v = _head_cols(1, 0), _head_cols(1, 1), _head_cols(1, 2)
    step = sharp / 2  # one token up costs score / 2; being above t gains V tokens' worth
    for t in range(V):
        for u in range(2, V):
            above = 1.0 if (t == SEP or (t > SEP and u > t)) else 0.0
            _read(a1.c_attn.weight, TOK + t, q + u, step * (V * above - u))
    for u in range(V):
        _read(a1.c_attn.weight, TOK + u, k + u, 1.0 if u > SEP else 0.0)
        _read(a1.c_attn.weight, TOK + u, v + u, 1.0)
        a1.c_proj.weight[HD + u, ANS + u] = gain


def build_module(name: str, seed: int = 0, score: float = 12.0, gain: float = 8.0, decoy_scale: float = 0.3):
    """The hand-set ``GPT2LMHeadModel`` of ``"counting"``, ``"reversal"`` or ``"sorting"``."""
    from ._circuits import blank_gpt2

    model = blank_gpt2(V, T, D, H, seed)
    g = torch.Generator().manual_seed(seed + 1)
    tr = model.transformer
    with torch.no_grad():
        tr.wte.weight[:, TOK : TOK + V] = torch.eye(V)
        tr.wte.weight[:, ONE] = C
        tr.wpe.weight[:, POS : POS + T] = torch.eye(T)
        {"counting": _counting, "reversal": _reversal, "sorting": _sorting}[name](tr, score, gain)
        unembed = gain * (32 if name == "counting" else 1)  # neighbouring counts' lines differ little
        for v in range(V):
            _read(model.lm_head.weight.T, ANS + v, v, unembed)
        _decoys(tr, name, g, decoy_scale)
    return model


def _decoys(tr, name: str, g: torch.Generator, scale: float) -> None:
    """Every other head and MLP: random reads of the stream (not ONE), writes only into the scratch space."""
    n_scratch = D - SCRATCH
    for layer, block in enumerate(tr.h):
        for h in range(H):
            if (layer, h) in TRUE_HEADS[name]:
                continue
            for part in range(3):
                w = torch.randn(D, HD, generator=g) / math.sqrt(D)
                w[ONE] = 0.0
                block.attn.c_attn.weight[:, _head_cols(h, part) : _head_cols(h, part) + HD] = w
            block.attn.c_proj.weight[h * HD : (h + 1) * HD, SCRATCH:] = (
                scale * torch.randn(HD, n_scratch, generator=g) / math.sqrt(HD)
            )
        if layer in TRUE_MLPS[name]:
            continue
        w = torch.randn(D, 4 * D, generator=g) / math.sqrt(D)
        w[ONE] = 0.0
        block.mlp.c_fc.weight.copy_(w)
        block.mlp.c_fc.bias.copy_(0.1 * torch.randn(4 * D, generator=g))
        block.mlp.c_proj.weight[:, SCRATCH:] = (
            scale * torch.randn(4 * D, n_scratch, generator=g) / math.sqrt(4 * D)
        )
