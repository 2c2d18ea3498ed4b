"""Architecture tests for torchvision and timm models (random weights, nothing downloaded).

They need torchvision and timm, which do not install beside the project's torch, so ``make test`` runs them
in a second environment (``make test-archs``: torch, torchvision and timm from the package index).
"""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import assert_no_hooks


@pytest.fixture(autouse=True)
def _no_hooks_left(monkeypatch):
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
