"""Hub ids: the local Hugging Face cache first, the network only when the Hub can be reached."""

from __future__ import annotations

import pytest

import torch_shard_interpret as tsi
from torch_shard_interpret.loading import _load


def test_unreachable_hub_is_one_clear_error_without_retries(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(_load, "_hub_reachable", lambda timeout=3.0: False)
    calls = []
    real = _load._load_hf

    def spy(name, **kwargs):
        calls.append(kwargs["hf_kwargs"].get("local_files_only"))
        return real(name, **kwargs)

    monkeypatch.setattr(_load, "_load_hf", spy)
    with pytest.raises(tsi.ModelNotFoundError, match="cannot be reached") as info:
        tsi.load("someorg/no-such-model")
    assert calls == [True]  # only the local cache was tried
    assert "\n" not in str(info.value) and "smollm2-135m" in str(info.value)


def test_offline_flag_never_tries_the_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(_load, "_hub_reachable", lambda timeout=3.0: pytest.fail("must not look up the Hub"))
    with pytest.raises(tsi.ModelNotFoundError, match="HF_HUB_OFFLINE"):
        tsi.load("someorg/no-such-model")
