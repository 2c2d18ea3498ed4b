"""`tsi steer` on a tiny random LLaMA (preloaded, no download)."""

from __future__ import annotations

import pytest

import torch_shard_interpret as tsi
from _cli import preload
from torch_shard_interpret.cli.main import main
from torch_shard_interpret.steering import SteeringVector
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer


@pytest.fixture
def tiny(monkeypatch):
    model = tsi.wrap(tiny_hf_model("llama"), tiny_tokenizer())
    preload(monkeypatch, "tiny", model)
    return model


def test_steer_prints_both_generations_and_saves(tiny, tmp_path, capsys):
    out = tmp_path / "v.safetensors"
    argv = ["steer", "--model", "tiny", "--positive", "good happy", "--negative", "bad sad", "--site",
            "blocks.1.resid_post", "--scale", "8", "--prompt", "i think that", "--max-new-tokens", "3",
            "--save", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "unsteered" in text and "steered" in text and "i think that" in text
    sv = SteeringVector.load(out)
    assert sv.site == "blocks.1.resid_post" and sv.metadata["method"] == "contrast"
    assert (
        main(["steer", "--model", "tiny", "--load", str(out), "--prompt", "the dog", "--max-new-tokens", "2"])
        == 0
    )


@pytest.mark.parametrize(
    "extra, fragment",
    [
        ([], "--positive"),
        (["--positive", "good", "--negative", "bad", "--site", "blocks.9.resid_post"], "unknown site"),
        (["--positive", "good", "--negative", "bad", "--position", "last"], "--position"),
        (
            ["--positive", "good", "--negative", "bad", "--save", "/no/such/dir/v.safetensors"],
            "does not exist",
        ),
        (["--load", "/no/such/file.safetensors"], "no steering vector file"),
    ],
)
def test_steer_errors_are_one_line(tiny, capsys, extra, fragment):
    assert main(["steer", "--model", "tiny", "--max-new-tokens", "1", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tsi: error: ") and fragment in err[0], err
