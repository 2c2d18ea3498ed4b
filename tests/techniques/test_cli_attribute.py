"""tsi attribute: DLA, saliency and integrated gradients from the command line."""

from __future__ import annotations

import pytest

import torch_shard_interpret as tsi
from _cli import preload
from torch_shard_interpret.cli.main import main
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
    model = tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer())
    preload(monkeypatch, "tiny", model)
    return model


@pytest.mark.parametrize("method", ["dla", "saliency", "ig"])
def test_methods_print_and_write_html(method, tmp_path, capsys):
    code = main(
        [
            "attribute",
            "when mary and john went to the store",
            "--model",
            "tiny",
            "--method",
            method,
            "--target",
            "mary",
            "--steps",
            "16",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert (tmp_path / "o" / "attribution.html").read_text().startswith("<")
    if method == "dla":
        assert "remainder" in out and "blocks.1.attn" in out
    elif method == "ig":
        assert "completeness" in out
    else:
        assert "'store'" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["attribute", "  ", "--model", "tiny"], "prompt is empty"),
        (["attribute", "the cat", "--model", "tiny", "--target", "mary john"], "not one"),
        (
            ["attribute", "the cat", "--model", "tiny", "--method", "ig", "--baseline", "mary"],
            "--baseline is for",
        ),
    ],
)
def test_bad_input_is_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tsi: error:") and message in err and "\n" not in err
