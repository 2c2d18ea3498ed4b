"""Tensor parallelism on 2 CPU ranks (gloo): hooks see full tensors; results equal the unsharded model.

Two TP paths are checked, each against an unsharded copy of the same weights on every rank: Hugging Face
``from_pretrained(..., tp_plan="auto")`` (the usual user path) and torch ``parallelize_module`` with
``ColwiseParallel``/``RowwiseParallel`` on q/k/v/o and gate/up/down.
"""

from __future__ import annotations

import pytest
from _launch import launch

pytestmark = pytest.mark.distributed

ATOL = 1e-5
PATHS = ("hf", "torch")
CANONICAL = [
    "embed",
    *(
        f"blocks.{i}.{s}"
        for i in range(2)
        for s in ("resid_pre", "attn.z", "attn.out", "mlp.post", "mlp.out", "resid_post")
    ),
    "final_norm",
    "logits",
]
INTERVENTIONS = (
    "patch_resid",
    "patch_z",
    "patch_mlp_post",
    "add",
    "add_mlp_post",
    "ablate_heads",
    "ablate_zero",
    "fn",
)


@pytest.fixture(scope="module")
def per_rank(tiny_llama_dir, tmp_path_factory):
    """The differences every rank measured, as a list indexed by rank."""
    done = launch("worker_tp.py", str(tiny_llama_dir), out=tmp_path_factory.mktemp("tp"), timeout=120)
    return done.check()


@pytest.mark.parametrize("path", PATHS)
def test_every_canonical_site_equals_the_unsharded_model(per_rank, path):
    for rank, d in enumerate(per_rank):
        assert d[f"{path}/cache/count"] == 0, f"rank {rank}: some sites were not cached"
        assert d[f"{path}/logits"] < ATOL
        for site in CANONICAL:
            assert d[f"{path}/cache/{site}"] < ATOL, f"rank {rank} ({path}): {site} differs"


@pytest.mark.parametrize("path", PATHS)
def test_hooks_see_full_tensors(per_rank, path):
    for d in per_rank:
        assert d[f"{path}/shape/attn.z"] == 1  # [batch, pos, n_heads=4, d_head=16], not the local 2 heads
        assert d[f"{path}/shape/fn_z"] == 1
        assert d[f"{path}/shape/fn_mlp_post"] == 1  # d_mlp 128, not the local 64


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", INTERVENTIONS)
def test_interventions_give_the_unsharded_logits(per_rank, path, case):
    for rank, d in enumerate(per_rank):
        assert d[f"{path}/{case}"] < ATOL, f"rank {rank} ({path}): {case} differs"
        assert d[f"{path}/{case}/changed"] > 1e-3, f"{case} changed nothing, so the check proves nothing"


@pytest.mark.parametrize("path", PATHS)
def test_steered_generation_gives_the_same_tokens(per_rank, path):
    for d in per_rank:
        assert d[f"{path}/generate_equal"] == 1
        assert d[f"{path}/generate_steered"] == 1


@pytest.mark.parametrize("path", PATHS)
def test_gradients_through_sharded_sites(per_rank, path):
    for d in per_rank:
        for site in ("blocks.0.attn.z", "blocks.0.mlp.post", "blocks.1.resid_post"):
            assert d[f"{path}/grad/{site}"] < ATOL, f"{path}: grad at {site} differs"


@pytest.mark.parametrize("path", PATHS)
def test_early_stop_on_every_rank(per_rank, path):
    for d in per_rank:
        assert d[f"{path}/early_stop"] < ATOL  # return_logits=False: every rank stops at the same place
        assert d[f"{path}/after_early_stop"] < ATOL  # and the model runs normally afterwards
