"""The real-behaviour check (IOI on the embedded model): full suite only, and every row passes.

Measured (3 prompt pairs): EAP-IG's top 1% (644 edges) faithfulness 0.960; the top-3 patched heads (a23.h3,
a29.h1, a29.h0) are all in that circuit; the top-3 DLA heads on logit(IO) - logit(S) are a23.h3 +2.31,
a29.h1 +1.65, a23.h0 +0.80, all in the second half of the 30 layers. About 80 s on 2 shared cores.
"""

from __future__ import annotations

import pytest

from torch_shard_interpret.bench import _check_ioi
from torch_shard_interpret.bench._scoreboard import row_passes


def test_the_quick_suite_skips_it():
    assert _check_ioi.checks(quick=True) == []


def test_the_swapped_prompts_exchange_the_two_names():
    class Tok:
        def token_id(self, s):
            return {" Mary": 1, " John": 2, " Tom": 3, " James": 4, " Anna": 5, " Mark": 6}[s]

    clean, corrupt, right, wrong = _check_ioi.ioi_pairs(Tok())
    assert corrupt[0] == "When John and Mary went to the store, Mary gave a drink to"
    assert right.tolist() == [1, 3, 5] and wrong.tolist() == [2, 4, 6]


@pytest.mark.slow
def test_every_ioi_row_passes():
    rows = _check_ioi.checks(quick=False)
    assert len(rows) == 3
    for r in rows:
        assert row_passes(r["value"], r["threshold"], r["higher_is_better"]), r
