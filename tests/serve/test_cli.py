"""``tsi serve`` command-line checks that need no running server."""

from __future__ import annotations

from _cli import preload
from torch_shard_interpret.cli.main import main


def test_serve_refuses_remote_host_without_flag(capsys):
    code = main(["serve", "--host", "0.0.0.0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--allow-remote" in err and err.count("\n") == 1


def test_serve_bad_port(capsys):
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err


def test_serve_help_lists_options(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    for opt in ("--model", "--store", "--sae", "--host", "--port", "--allow-remote"):
        assert opt in out


def test_serve_starts_with_preloaded_model(monkeypatch, capsys, sae_dir):
    """The whole command up to uvicorn.run (which is replaced), with a tiny model."""
    import uvicorn

    import torch_shard_interpret as tsi
    from torch_shard_interpret.cli import serve
    from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

    seen = {}
    preload(monkeypatch, "tiny", tsi.wrap(tiny_hf_model(), tiny_tokenizer()))
    monkeypatch.setattr(
        serve, "serve_until_interrupted", lambda app, config: seen.update(app=app, config=config)
    )
    assert main(["serve", "--model", "tiny", "--sae", str(sae_dir), "--port", "9999"]) == 0
    assert seen["config"].host == "127.0.0.1" and seen["config"].port == 9999
    assert isinstance(seen["config"], uvicorn.Config)
    assert list(seen["app"].state.tsi.saes) == [sae_dir.name]
    assert "open http://127.0.0.1:9999/  (" in capsys.readouterr().err
    assert main(["serve", "--model", "tiny", "--host", "0.0.0.0", "--allow-remote"]) == 0
    assert "WARNING" in capsys.readouterr().err


def test_serve_vision_model_flag(monkeypatch, capsys):
    import torch_shard_interpret as tsi
    from torch_shard_interpret.cli import serve
    from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

    seen = {}
    preload(monkeypatch, "tiny", tsi.wrap(tiny_hf_model(), tiny_tokenizer()))
    monkeypatch.setattr(serve, "serve_until_interrupted", lambda app, config: seen.update(app=app))
    assert main(["serve", "--model", "tiny"]) == 0
    assert seen["app"].state.vision.describe()["model"] == "digits-cnn"
    assert main(["serve", "--model", "tiny", "--vision-model", "none"]) == 0
    assert seen["app"].state.vision.enabled is False
    capsys.readouterr()
    assert main(["serve", "--model", "tiny", "--vision-model", "resnet"]) == 2
    err = capsys.readouterr().err
    assert "--vision-model must be one of digits-cnn" in err and err.count("\n") == 1
