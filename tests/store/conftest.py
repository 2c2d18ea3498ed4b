"""Shared fixtures of the store tests: one torch thread (deterministic, fast kernels on a shared machine),
a tiny wrapped model, and the subprocess worker module."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
WORKER = HERE / "_harvest_worker.py"


def _load_worker():
    spec = importlib.util.spec_from_file_location("_tsi_store_harvest_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_WORKER = _load_worker()


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def worker():
    """The worker module (``harvest_tiny``, ``tiny_model``, ``texts``, settings) and its path."""
    return _WORKER


@pytest.fixture
def tiny():
    return _WORKER.tiny_model()


@pytest.fixture
def child():
    """Helpers to launch worker subprocesses: ``child.env(**extra)``, ``child.port()``, ``child.cmd(*args)``."""
    return _Child()


class _Child:
    python = sys.executable
    worker = str(WORKER)

    def cmd(self, *args: str) -> list[str]:
        return [self.python, self.worker, *args]

    def torchrun(self, nproc: int, *args: str) -> list[str]:
        return [self.python, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                "--master_addr", "127.0.0.1", "--master_port", str(self.port()), self.worker, *args]  # fmt: skip

    @staticmethod
    def env(**extra: str) -> dict[str, str]:
        return child_env(**extra)

    @staticmethod
    def port() -> int:
        return free_port()


def child_env(**extra: str) -> dict[str, str]:
    """Environment of a worker subprocess: our src on the path, one thread."""
    src = str(HERE.parents[1] / "src")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
