"""FSDP2 (``fully_shard`` on every block and the root) on 2 CPU ranks (gloo), each rank on its own rows.

Caching, patching, steering, head ablation, gradients and steered generation equal an unsharded copy of
the same weights; ``gather_cache`` and ``tsi.distributed.run`` join both ranks' rows on rank 0.
"""

from __future__ import annotations

import pytest
from _launch import launch

pytestmark = pytest.mark.distributed

ATOL = 1e-5
SITES = [
    "embed",
    "blocks.0.resid_post",
    "blocks.1.resid_post",
    "blocks.0.attn.z",
    "blocks.1.attn.z",
    "blocks.0.mlp.post",
    "blocks.1.mlp.post",
    "blocks.1.attn.out",
]


@pytest.fixture(scope="module")
def per_rank(tiny_llama_dir, tmp_path_factory):
    done = launch("worker_fsdp.py", str(tiny_llama_dir), out=tmp_path_factory.mktemp("fsdp"), timeout=120)
    return done.check()


def test_cache_equals_the_unsharded_model(per_rank):
    for rank, d in enumerate(per_rank):
        assert d["cache/count"] == 0
        assert d["logits"] < ATOL
        for site in SITES:
            assert d[f"cache/{site}"] < ATOL, f"rank {rank}: {site} differs"


@pytest.mark.parametrize("case", ["patch", "add", "ablate_heads"])
def test_interventions_give_the_unsharded_logits(per_rank, case):
    for d in per_rank:
        assert d[case] < ATOL
        assert d[f"{case}/changed"] > 1e-3


def test_gradients_and_generation(per_rank):
    for d in per_rank:
        for site in ("blocks.0.attn.z", "blocks.0.mlp.post", "blocks.1.resid_post"):
            assert d[f"grad/{site}"] < ATOL, f"grad at {site} differs"
        assert d["generate_equal"] == 1
        assert d["early_stop"] < ATOL and d["after_early_stop"] < ATOL  # return_logits=False, then a full run


def test_gather_cache_joins_the_rows_of_every_rank_on_rank_0(per_rank):
    main, other = per_rank
    assert main["gather/count"] == 0
    for site in SITES:
        assert main[f"gather/{site}"] < ATOL, f"gathered {site} differs from the unsharded run on all rows"
    assert other["gather/none_off_main"] == 0  # the other ranks get None
    assert main["run/logits"] < ATOL and main["run/resid"] < ATOL and main["run/tokens"] == 0
    assert main["gather_all/logits"] < ATOL and other["gather_all/logits"] < ATOL
