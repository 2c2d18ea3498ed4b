"""The helpers in one process: a world of one, the timeout setting and gathering without peers."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

import torch_shard_interpret as tsi
from torch_shard_interpret import distributed as tsid
from torch_shard_interpret.testing import TinyMLP

pytestmark = pytest.mark.distributed


def test_without_a_process_group():
    assert not tsid.is_initialized()
    assert (tsid.rank(), tsid.world_size(), tsid.is_main()) == (0, 1, True)
    tsid.barrier()  # a no-op
    cache = tsi.ActivationCache({"a": torch.ones(2, 3)})
    assert torch.equal(tsid.gather_cache(cache)["a"], cache["a"])
    assert list(tsid.shard(range(5))) == [0, 1, 2, 3, 4]


def test_process_group_is_a_world_of_one_outside_torchrun_and_is_always_destroyed(monkeypatch):
    for var in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="inside"):
        with tsid.process_group(timeout=10):
            assert dist.is_initialized() and tsid.world_size() == 1
            tsid.init()  # already running: a no-op
            tsid.barrier()
            model = tsi.wrap(TinyMLP())
            run = tsid.run(model, torch.randn(3, 16), cache="fc1:output", gather="rank0")
            assert run.cache["fc1:output"].shape == (3, 32)
            raise ValueError("inside")
    assert not dist.is_initialized()


def test_timeout_setting(monkeypatch):
    monkeypatch.delenv("TSI_DIST_TIMEOUT", raising=False)
    assert tsid.default_timeout() == 300
    monkeypatch.setenv("TSI_DIST_TIMEOUT", "12.5")
    assert tsid.default_timeout() == 12.5
    for bad in ("soon", "-1"):
        monkeypatch.setenv("TSI_DIST_TIMEOUT", bad)
        with pytest.raises(tsi.TsiError, match="TSI_DIST_TIMEOUT"):
            tsid.default_timeout()


def test_shard_splits_contiguously(monkeypatch):
    items = list(range(7))
    parts = []
    for r in range(3):
        monkeypatch.setattr(tsid._group, "rank", lambda r=r: r)
        monkeypatch.setattr(tsid._group, "world_size", lambda: 3)
        parts.append(list(tsid.shard(items)))
    assert parts == [[0, 1, 2], [3, 4], [5, 6]]


def test_bad_gather_value():
    with pytest.raises(tsid.DistributedError, match="gather="):
        tsid.run(tsi.wrap(TinyMLP()), torch.randn(1, 16), gather="rank1")
