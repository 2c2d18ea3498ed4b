"""Fixtures for the loading tests: the real embedded model, and a fake GGUF source for cache tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from _models import embedded_model
from torch_shard_interpret.loading import _embedded
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer


@pytest.fixture(scope="module")
def embedded() -> Any:
    """The real embedded model (one GGUF conversion per machine, one load per session)."""
    return embedded_model()


def tiny_pair(fail_in_tokenizer_save: bool = False) -> tuple[Any, Any]:
    """A tiny tied-embedding Llama and a word-level tokenizer standing in for the dequantized GGUF."""
    model = tiny_hf_model("llama", tie_word_embeddings=True)
    model.tie_weights()
    tokenizer = tiny_tokenizer()
    if fail_in_tokenizer_save:

        def save_pretrained(*args: Any, **kwargs: Any) -> None:  # after config and weights are written
            raise RuntimeError("simulated failure in the middle of the conversion")

        tokenizer.save_pretrained = save_pretrained
    return model, tokenizer


@pytest.fixture
def fake_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """An empty cache in ``tmp_path`` and a GGUF "source" that converts a tiny model instantly.

    ``state["calls"]`` counts conversions; set ``state["fail"] = True`` to make the next one fail
    midway (after the weights are written) or ``state["forbid"] = True`` to make any call an error.
    """
    monkeypatch.setenv("TSI_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "fake.gguf"
    source.write_bytes(b"GGUF")
    state: dict[str, Any] = {"calls": 0, "fail": False, "forbid": False, "cache": tmp_path / "cache"}

    def fake_load_gguf(path: Path) -> tuple[Any, Any]:
        if state["forbid"]:
            raise AssertionError("the GGUF file was read although the cache is complete")
        state["calls"] += 1
        return tiny_pair(fail_in_tokenizer_save=state["fail"])

    monkeypatch.setattr(_embedded, "gguf_path", lambda: source)
    monkeypatch.setattr(_embedded, "_load_gguf", fake_load_gguf)
    return state
