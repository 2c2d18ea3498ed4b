"""``TSI_DIST_TIMEOUT`` is parsed in one place (``tsi.distributed.timeout_seconds``) and reaches every path
that starts a process group: harvesting and SAE training, seen as the live gloo group's timeout."""

from __future__ import annotations

import json

import pytest
import torch
from _launch import launch

import torch_shard_interpret as tsi
from torch_shard_interpret import distributed as tsid
from torch_shard_interpret.store import StoreError

pytestmark = pytest.mark.distributed


@pytest.mark.parametrize("path", ["harvest", "sae"])
def test_the_timeout_reaches_harvesting_and_sae_training(path, tmp_path):
    done = launch("worker_timeout.py", str(tmp_path), path, out=tmp_path, timeout=150,
                  env={"TSI_DIST_TIMEOUT": "17.5"})  # fmt: skip
    assert done.returncode == 0, done.output[-4000:]
    for rank in (0, 1):
        record = json.loads((tmp_path / f"{path}-rank{rank}.json").read_text())
        assert record["seen"] == {"timeout": 17.5, "world": 2, "rank": rank}
        assert not (record["before"] or record["after"])  # it started and ended its own group


@pytest.mark.parametrize("bad", ["soon", "-1", "0", "nan", "inf"])
def test_a_bad_timeout_is_one_sentence_in_both_paths(bad, monkeypatch, tmp_path):
    """Rank 0 of a world of two, as torchrun would start it: the value is refused before any rendezvous."""
    monkeypatch.setenv("TSI_DIST_TIMEOUT", bad)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(tsi.TsiError) as sae_err:
        tsi.sae.train(torch.randn(64, 8), {"kind": "topk", "d_sae": 8, "k": 2}, {"steps": 1}, progress=False)
    from torch_shard_interpret.testing import tiny_hf_model

    model = tsi.wrap(tiny_hf_model("llama", seed=0))
    with pytest.raises(StoreError) as store_err:
        tsi.store.harvest(model, torch.randint(4, 100, (2, 4)), sites=["blocks.0.resid_post"],
                          path=tmp_path / "s", progress=False)  # fmt: skip
    for err in (sae_err, store_err):
        msg = str(err.value)
        assert msg.startswith(f"TSI_DIST_TIMEOUT={bad!r}") and "e.g. 300" in msg and "\n" not in msg
    assert not tsid.is_initialized() and not (tmp_path / "s").exists()
    assert tsid.timeout_seconds(12) == 12.0  # an explicit value wins over the variable
