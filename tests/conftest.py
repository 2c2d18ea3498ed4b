"""Suite-wide fixtures: every test ends with no hook of ours left on any model it wrapped."""

from __future__ import annotations

import warnings

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import assert_no_hooks


@pytest.fixture(autouse=True)
def _no_hooks_left(monkeypatch):
    """Record every module wrapped during the test and check it is hook-free afterwards."""
    wrapped = []
    original = tsi.Model.__init__

    def recording_init(self, module, *args, **kwargs):
        original(self, module, *args, **kwargs)
        wrapped.append(module)

    monkeypatch.setattr(tsi.Model, "__init__", recording_init)
    torch.manual_seed(0)
    yield
    for module in wrapped:
        assert_no_hooks(module)


@pytest.fixture
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
