"""Shared fixtures of the jax-shard-interpret tests (no torch here: torch-side tests import it themselves)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny():
    """``(arch, framework) -> jsi.Model`` of seeded random tiny decoders, built once per session."""
    from jax_shard_interpret import models

    built = {}

    def get(arch: str = "llama", framework: str = "nnx"):
        key = (arch, framework)
        if key not in built:
            built[key] = models.random(models.tiny_config(arch), framework, seed=0)
        return built[key]

    return get
