"""``tsi serve`` command line: --allow-remote keeps the Host allowlist and requires the printed token."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from starlette.testclient import TestClient  # noqa: E402

import torch_shard_interpret as tsi  # noqa: E402
from _cli import preload
from torch_shard_interpret.cli import serve  # noqa: E402
from torch_shard_interpret.cli.main import main  # noqa: E402
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer  # noqa: E402


@pytest.fixture
def started(monkeypatch):
    seen = {}
    preload(monkeypatch, "tiny", tsi.wrap(tiny_hf_model(), tiny_tokenizer()))
    monkeypatch.setattr(serve, "serve_until_interrupted", lambda app, config: seen.update(app=app))
    return seen


def test_allow_remote_keeps_host_check_and_needs_token(started, capsys):
    argv = ["serve", "--model", "tiny", "--host", "0.0.0.0", "--allow-remote", "--no-attention"]
    assert main([*argv, "--allowed-host", "box.example.org"]) == 0
    err = capsys.readouterr().err
    token = re.search(r"\?token=([A-Za-z0-9_\-]+)", err).group(1)
    assert len(token) >= 24
    with TestClient(started["app"], base_url="http://box.example.org:8765") as c:
        assert c.get("/api/info").status_code == 401
        assert c.get("/api/info", headers={"x-tsi-token": token}).status_code == 200
        rebound = c.get("/api/info", headers={"x-tsi-token": token, "host": "attacker.example"})
        assert rebound.status_code == 400
        assert c.get("/api/info", headers={"x-tsi-token": token, "host": "localhost"}).status_code == 200
    # Each start prints a fresh token.
    assert main(argv) == 0
    assert re.search(r"\?token=([A-Za-z0-9_\-]+)", capsys.readouterr().err).group(1) != token


def test_local_server_has_no_token_but_checks_host(started, capsys):
    assert main(["serve", "--model", "tiny", "--no-attention"]) == 0
    assert "token=" not in capsys.readouterr().err
    with TestClient(started["app"], base_url="http://127.0.0.1:8765") as c:
        assert c.get("/api/info").status_code == 200
        assert c.get("/api/info", headers={"host": "127.0.0.1.evil.example"}).status_code == 400


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--max-jobs", "0"], "--max-jobs must be between 1 and 1000, not 0"),
        (["--max-jobs", "100000"], "--max-jobs must be between 1 and 1000"),
        (["--max-cost", "-5"], "--max-cost must be between 1 and"),
        (["--port", "70000"], "--port must be between 1 and 65535"),
        (["--allowed-host", "http://evil/"], "--allowed-host takes a bare host name"),
        (["--host", "0.0.0.0"], "add --allow-remote"),
    ],
)
def test_bad_serve_options_name_the_range(started, capsys, extra, needle):
    assert main(["serve", "--model", "tiny", *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert "app" not in started


def test_starting_the_server_leaves_other_logging_handlers_open(started, capsys):
    """uvicorn's default logging set-up closes every handler in the process; some (absl's) close their stream."""
    import io
    import logging

    class ClosingHandler(logging.StreamHandler):
        def close(self):
            self.stream.close()
            super().close()

    stream = io.StringIO()
    handler = ClosingHandler(stream)
    try:
        assert main(["serve", "--model", "tiny", "--no-attention"]) == 0
        assert not stream.closed
    finally:
        handler.close()
