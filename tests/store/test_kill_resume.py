"""A harvest killed with SIGKILL at a random moment leaves a store that no reader accepts, and resume=True
finishes it into exactly the bytes of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import torch_shard_interpret as tsi
from torch_shard_interpret.store import StoreIncompleteError


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_mid_harvest_then_resume_gives_identical_shards(worker, child, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(child.cmd("--out", str(out), "--sleep", "0.05"), env=child.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # wait until a few shards are finished, then kill mid-shard
            manifest = out / "manifest.json"
            if manifest.exists() and len(json.loads(manifest.read_text())["shards"]) >= 3:
                break
            if proc.poll() is not None:
                pytest.fail(f"the worker ended early: {proc.communicate()[1].decode()[-2000:]}")
            time.sleep(0.02)
        else:
            pytest.fail("the worker wrote no shard within 90 s")
        time.sleep(0.07)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    manifest = json.loads((out / "manifest.json").read_text())
    finished = {s["file"]: (out / s["file"]).stat().st_mtime_ns for s in manifest["shards"]}
    assert not manifest["complete"] and 3 <= len(finished)
    with pytest.raises(StoreIncompleteError):
        tsi.store.open(out)
    partial = tsi.store.open(out, allow_incomplete=True)  # what was listed is whole and verified
    partial.verify()

    model = worker.tiny_model()
    resumed = worker.harvest_tiny(out, resume=True, model=model)
    reference = worker.harvest_tiny(tmp_path / "ref", model=model)
    assert len(finished) < len(resumed.shards) == len(reference.shards)
    for name, mtime in finished.items():  # finished shards were kept, not rewritten
        assert (out / name).stat().st_mtime_ns == mtime
    for a, b in zip(resumed.shards, reference.shards, strict=True):
        assert a["file"] == b["file"]
        assert (out / a["file"]).read_bytes() == (tmp_path / "ref" / b["file"]).read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "ref").iterdir())
