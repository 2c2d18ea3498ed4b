"""Fixtures for the multi-process tests: a saved tiny LLaMA and the gloo requirement."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch.distributed as dist

# The test modules import the launch harness as `_launch` (pytest runs in importlib mode).
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/distributed/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.distributed)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A random tiny LLaMA (2 layers, 4 heads, d_model 64, d_mlp 128) saved with ``save_pretrained``."""
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    pytest.importorskip("transformers")
    from torch_shard_interpret.testing import tiny_hf_model

    path = tmp_path_factory.mktemp("tiny_llama")
    tiny_hf_model("llama").save_pretrained(path)
    return path
