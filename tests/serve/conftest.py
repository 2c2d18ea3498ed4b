"""Shared fixtures for the ``tsi serve`` tests: a tiny model, a tiny random SAE, an app and a live server."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("starlette")
pytest.importorskip("httpx")

import torch_shard_interpret as tsi  # noqa: E402
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer  # noqa: E402

ARTIFACTS = Path(__file__).parent / "artifacts"


def write_random_sae(path: Path, d_in: int, d_sae: int = 48, site: str = "blocks.1.hook_resid_post") -> Path:
    """A random SAE in SAELens layout (``cfg.json`` + ``sae_weights.safetensors``)."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    save_file(
        {
            "W_enc": torch.randn(d_in, d_sae, generator=g),
            "b_enc": torch.zeros(d_sae),
            "W_dec": torch.randn(d_sae, d_in, generator=g) / d_in**0.5,
            "b_dec": torch.zeros(d_in),
        },
        str(path / "sae_weights.safetensors"),
    )
    cfg = {"d_in": d_in, "d_sae": d_sae, "hook_name": site, "architecture": "standard"}
    (path / "cfg.json").write_text(json.dumps(cfg))
    return path


@pytest.fixture(scope="session")
def tiny_model():
    model = tsi.wrap(tiny_hf_model(), tiny_tokenizer())
    return model


@pytest.fixture(scope="session")
def sae_dir(tmp_path_factory, tiny_model):
    return write_random_sae(tmp_path_factory.mktemp("sae") / "tiny-sae", tiny_model.cfg.d_model)


@pytest.fixture(scope="session")
def vector_file(tmp_path_factory, tiny_model):
    from torch_shard_interpret.steering import SteeringVector

    path = tmp_path_factory.mktemp("vectors") / "love.safetensors"
    SteeringVector.from_pair(tiny_model, "love love", "hate hate", site="blocks.0.resid_post").save(path)
    return path


@pytest.fixture(scope="session")
def app(tiny_model, sae_dir, vector_file):
    from torch_shard_interpret.serve import create_app

    return create_app(tiny_model, saes=[sae_dir], vectors=[vector_file], model_name="tiny")


@pytest.fixture(scope="session")
def client(app):
    from starlette.testclient import TestClient

    with TestClient(app) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(app):
    """The app on a real uvicorn server at 127.0.0.1:<free port>, in a background thread."""
    with serving(app) as url:
        yield url


@contextlib.contextmanager
def serving(app):
    """Run ``app`` on uvicorn at 127.0.0.1:<free port> in a background thread; yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline:
            raise RuntimeError("uvicorn did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="session")
def serve_app():
    """``serving``, for a test that runs an app of its own: ``with serve_app(app) as url: ...``."""
    return serving
