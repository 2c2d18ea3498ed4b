"""Run a worker script on several CPU processes (gloo) and read back what rank 0 saved.

Each launch is one ``subprocess`` with a hard deadline; on timeout the whole process group of the launch
(the launcher and every worker it started) is killed, so no test leaves processes behind. Workers use
``_worker.main``, which destroys the process group in ``finally`` and saves rank 0's result with
``torch.save``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"


@dataclass
class Launch:
    returncode: int | None  # None: killed at the deadline
    output: str  # stdout and stderr of every rank, interleaved
    seconds: float
    result: Any  # what rank 0 saved, or None

    def check(self) -> Any:
        assert self.returncode == 0, f"workers failed (rc={self.returncode}):\n{self.output[-6000:]}"
        assert self.result is not None, f"rank 0 saved no result:\n{self.output[-6000:]}"
        return self.result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(out: Path, extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(HERE), env.get("PYTHONPATH", "")])
    env.update(
        OMP_NUM_THREADS="1",
        TSI_TEST_OUT=str(out),
        TSI_DIST_TIMEOUT=env.get("TSI_DIST_TIMEOUT_TEST", "60"),
        PYTHONUNBUFFERED="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        PYTHONWARNINGS="ignore",
    )
    env.update(extra or {})
    return env


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the session this launch started (its own leader and children only)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def launch(
    worker: str,
    *args: str,
    out: Path,
    nprocs: int = 2,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    torchrun: bool = True,
) -> Launch:
    """Run ``tests/distributed/{worker}`` on ``nprocs`` ranks.

    ``torchrun=True``: through ``python -m torch.distributed.run`` (the documented way). ``False``: start the
    ranks directly with the rendezvous environment torchrun would set, with no agent that tears the others
    down when one fails, so a test sees what the surviving ranks do by themselves.
    """
    out.mkdir(parents=True, exist_ok=True)
    script = str(HERE / worker)
    port = free_port()
    full_env = _env(out, env)
    start = time.monotonic()
    if torchrun:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nprocs),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            script,
            *args,
        ]
        procs = [
            subprocess.Popen(
                cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
            )
        ]
    else:
        procs = []
        for r in range(nprocs):
            rank_env = dict(
                full_env,
                RANK=str(r),
                LOCAL_RANK=str(r),
                WORLD_SIZE=str(nprocs),
                LOCAL_WORLD_SIZE=str(nprocs),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
            )
            procs.append(
                subprocess.Popen(
                    [sys.executable, script, *args],
                    env=rank_env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    outputs: list[str] = []
    codes: list[int | None] = []
    try:
        for i, proc in enumerate(procs):
            left = max(1.0, timeout - (time.monotonic() - start))
            try:
                text, _ = proc.communicate(timeout=left)
                codes.append(proc.returncode)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                text, _ = proc.communicate()
                codes.append(None)
            outputs.append(f"----- process {i} -----\n" + text.decode(errors="replace"))
    finally:
        for proc in procs:
            if proc.poll() is None:
                _kill_group(proc)
                proc.wait()
            else:
                _kill_group(proc)  # children a finished launcher may have left behind
    seconds = time.monotonic() - start
    result_file = out / "result.pt"
    result = torch.load(result_file, weights_only=False) if result_file.exists() else None
    rc = None if any(c is None for c in codes) else codes[0]
    return Launch(rc, "\n".join(outputs), seconds, result)


def rank_codes(launch_: Launch) -> list[str]:
    """The ``RANK-EXIT r code`` lines the worker prints (direct launches only)."""
    return [line for line in launch_.output.splitlines() if line.startswith("RANK-EXIT")]
