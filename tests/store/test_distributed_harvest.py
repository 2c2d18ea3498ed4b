"""Data-parallel harvest: 2 gloo ranks on CPU write exactly the store of a single process; a rank that dies
makes the other fail with a clear error within the timeout, and resume=True finishes the job."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch

import torch_shard_interpret as tsi

pytestmark = pytest.mark.distributed


def _run(cmd, env, timeout=120):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _same_store(a, b):
    assert [s["file"] for s in a.shards] == [s["file"] for s in b.shards]
    for x, y in zip(a.shards, b.shards, strict=True):
        assert x["sha256"] == y["sha256"] and x["row_start"] == y["row_start"]
        assert (a.path / x["file"]).read_bytes() == (b.path / y["file"]).read_bytes()
    for site in a.sites:
        assert torch.equal(a.read(site), b.read(site))
    assert torch.equal(a.tokens(), b.tokens())


def test_two_ranks_write_the_single_process_store(worker, child, tmp_path):
    out = tmp_path / "dp"
    proc = _run(child.torchrun(2, "--out", str(out)), child.env(TSI_DIST_TIMEOUT="20"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = tsi.store.open(out, verify="all")
    assert store.manifest["world_size"] == 2 and store.manifest["complete"]
    reference = worker.harvest_tiny(tmp_path / "single")
    _same_store(store, reference)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.path.iterdir())


def test_dead_rank_fails_the_other_within_the_timeout_then_resume_finishes(worker, child, tmp_path):
    out = tmp_path / "dp"
    port = str(child.port())
    procs = []
    for rank in (0, 1):
        env = child.env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                        MASTER_PORT=port, TSI_DIST_TIMEOUT="15")  # fmt: skip
        args = ["--out", str(out), "--die-after-shards", "1", "--die-rank", "1"]
        procs.append(subprocess.Popen(child.cmd(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))  # fmt: skip
    try:
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert procs[1].returncode == 17  # rank 1 "crashed" after its first shard
    assert procs[0].returncode != 0
    err = results[0][1]
    assert "HarvestDistributedError" in err and "resume=True" in err, err[-3000:]
    # it failed by the barrier's timeout (the communicate timeout above bounds the wall time; no timed
    # assertion, which a loaded machine breaks)
    assert "within 15 s" in err, err[-3000:]

    # rank 0 finished its shards (and recorded them); rank 1's first shard file is on disk but unlisted
    listed = json.loads((out / "progress.rank0.json").read_text())["shards"]
    assert listed and all(s["index"] % 2 == 0 for s in listed)
    kept = {s["file"]: (out / s["file"]).stat().st_mtime_ns for s in listed}
    with pytest.raises(tsi.store.StoreIncompleteError):
        tsi.store.open(out)

    proc = _run(child.torchrun(2, "--out", str(out), "--resume"), child.env(TSI_DIST_TIMEOUT="20"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, mtime in kept.items():  # not rewritten
        assert (out / name).stat().st_mtime_ns == mtime
    _same_store(tsi.store.open(out, verify="all"), worker.harvest_tiny(tmp_path / "single"))
