"""Circuits under tensor parallelism (2 CPU ranks, gloo, torchrun): edge scores equal the unsharded model.

Both TP paths of ``test_tensor_parallel.py`` (Hugging Face ``tp_plan="auto"`` and torch ``parallelize_module``)
score every edge with EAP and EAP-IG and a sample of edges with exact patching; each rank compares against an
unsharded copy of the same weights. The accelerate ``device_map`` case (cpu + disk offload) is
``tests/circuits/test_faithfulness.py::test_offloaded_model_gives_the_same_scores``.
"""

from __future__ import annotations

import pytest
from _launch import launch

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def per_rank(tiny_llama_dir, tmp_path_factory):
    done = launch(
        "worker_circuits_tp.py", str(tiny_llama_dir), out=tmp_path_factory.mktemp("ctp"), timeout=300
    )
    return done.check()


@pytest.mark.parametrize("path", ["hf", "torch"])
@pytest.mark.parametrize("method", ["eap", "eap-ig", "patching"])
def test_edge_scores_equal_the_unsharded_model(per_rank, path, method):
    for rank, d in enumerate(per_rank):
        assert d[f"{path}/{method}/scale"] > 1e-3, "the scores are all zero: nothing was compared"
        assert d[f"{path}/{method}"] < 1e-4 * max(1.0, d[f"{path}/{method}/scale"]), (rank, path, method, d)
