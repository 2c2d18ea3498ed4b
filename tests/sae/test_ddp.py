"""Data-parallel SAE training under torchrun (gloo, 2 processes) matches single-process training."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.distributed
@pytest.mark.parametrize("kind", ["topk", "relu", "batchtopk"])
def test_ddp_matches_single_process(tmp_path, kind, monkeypatch):
    sys.path.insert(0, str(HERE))
    try:
        import _ddp_script
    finally:
        sys.path.remove(str(HERE))
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    single = _ddp_script.run(kind).state_dict()

    out = tmp_path / "ddp.pt"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(HERE.parents[1] / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(HERE / "_ddp_script.py"), str(out), kind]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[:3000]
    ddp = torch.load(out)
    for name, value in single.items():
        torch.testing.assert_close(ddp[name], value, atol=2e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
