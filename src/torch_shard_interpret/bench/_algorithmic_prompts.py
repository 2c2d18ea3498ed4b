"""Prompts of the counting, reversal and sorting circuits: random instances, accuracy, the clean/corrupt pair.

``sample(name, g)`` returns one random instance as ``(ids [L], {position: expected next token})``;
``accuracy(model, name, n)`` runs ``n`` of them (padded to 16 positions: the model is causal, so padding
after the end changes nothing before it) and returns the fraction of expected tokens that are the argmax.
``pair(name, g)`` builds the clean and corrupt prompts of the scored task (same length; see each function).
"""

from __future__ import annotations

import torch

from ._algorithmic import BOS, SEP, T, V


def _randint(g: torch.Generator, lo: int, hi: int) -> int:
    """A uniform integer in ``[lo, hi]``."""
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def _symbols(g: torch.Generator, n: int, lo: int = SEP + 1) -> list[int]:
    """``n`` distinct symbols from ``lo..V-1`` in random order."""
    return (torch.randperm(V - lo, generator=g)[:n] + lo).tolist()


def sample(name: str, g: torch.Generator) -> tuple[list[int], dict[int, int]]:
    if name == "counting":  # a few symbols (1..15), repeated: each position outputs its token's count so far
        alphabet = _symbols(g, _randint(g, 1, 5), lo=1)
        toks = [alphabet[_randint(g, 0, len(alphabet) - 1)] for _ in range(_randint(g, 1, T - 1))]
        ids = [BOS, *toks]
        return ids, {i: ids[1 : i + 1].count(ids[i]) for i in range(1, len(ids))}
    n = _randint(g, 1, (T - 2) // 2)
    if name == "reversal":  # BOS x SEP reversed(x); symbols may repeat
        x = [_randint(g, SEP + 1, V - 1) for _ in range(n)]
        out = x[::-1]
    else:  # sorting: BOS x SEP sorted(x), distinct symbols
        x = _symbols(g, n)
        out = sorted(x)
    ids = [BOS, *x, SEP, *out]
    s = n + 1
    return ids, {p: ids[p + 1] for p in range(s, s + n)}


def accuracy(model, name: str, n: int = 200, seed: int = 0, interventions=None) -> float:
    """Fraction of the expected tokens of ``n`` random instances that the model predicts (argmax), optionally
    under ``interventions`` (as ``model.run`` takes them)."""
    g = torch.Generator().manual_seed(seed)
    rows, wanted = [], []
    for _ in range(n):
        ids, expected = sample(name, g)
        rows.append(ids + [BOS] * (T - len(ids)))
        wanted.append(expected)
    with torch.no_grad():
        pred = model.run(torch.tensor(rows), interventions=interventions).logits.argmax(-1)
    hits = [int(pred[r, p]) == tok for r, exp in enumerate(wanted) for p, tok in exp.items()]
    return sum(hits) / len(hits)


def pair(name: str, g: torch.Generator) -> tuple[list[int], list[int], int, int]:
    """``(clean, corrupt, answer, wrong)``: the last position's answer on each prompt."""
    return {"counting": _pair_counting, "reversal": _pair_reversal, "sorting": _pair_sorting}[name](g)


def _pair_counting(g: torch.Generator):
    """12 tokens of 4 symbols; the last token occurs 3 times, the corrupt prompt replaces its first copy."""
    while True:
        a = _symbols(g, 4, lo=1)
        toks = [a[_randint(g, 0, 3)] for _ in range(12)]
        x = toks[-1]
        if toks.count(x) == 3:
            break
    corrupt = list(toks)
    corrupt[toks.index(x)] = next(s for s in a if s != x)
    return [BOS, *toks], [BOS, *corrupt], 3, 2


def _pair_reversal(g: torch.Generator):
    """``BOS x1..x5 SEP x5 x4 x3`` against ``BOS x1..x6 SEP x6 x5``: the separator moves one place, so the
    last position's target moves from ``x2`` to ``x4`` (distinct symbols)."""
    x = _symbols(g, 6)
    clean = [BOS, *x[:5], SEP, x[4], x[3], x[2]]
    corrupt = [BOS, *x, SEP, x[5], x[4]]
    return clean, corrupt, x[1], x[3]


def _pair_sorting(g: torch.Generator):
    """``BOS x SEP z1 z2`` (6 distinct symbols): the answer is ``u = z3``. The corrupt prompt puts, in place of
    ``u``, a symbol above every input, and in place of a larger input a new symbol ``w`` between ``z2`` and ``u``
    (its answer); its prefix ``z1 z2`` stays sorted."""
    while True:
        x = _symbols(g, 6)
        z = sorted(x)
        t, u = z[1], z[2]
        free = [s for s in range(SEP + 1, V) if s not in x]
        between = [s for s in free if t < s < u]
        above = [s for s in free if s > z[-1]]
        if between and above:
            break
    w, a, o = between[0], above[-1], z[3]
    corrupt_x = [a if s == u else w if s == o else s for s in x]
    return [BOS, *x, SEP, z[0], t], [BOS, *corrupt_x, SEP, z[0], t], u, w
