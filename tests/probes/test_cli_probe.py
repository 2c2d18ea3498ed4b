"""`tsi probe` on a tiny random LLaMA (preloaded, no download)."""

from __future__ import annotations

import json

import pytest

import torch_shard_interpret as tsi
from _cli import preload
from torch_shard_interpret.cli.main import main
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer


@pytest.fixture
def tiny(monkeypatch):
    model = tsi.wrap(tiny_hf_model("llama"), tiny_tokenizer())
    preload(monkeypatch, "tiny", model)
    return model


def test_probe_prints_accuracy_and_control(tiny, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    rows = [
        {"text": f"the {w} is {c}", "label": w}
        for w in ("cat", "dog")
        for c in ("red", "blue", "green", "good")
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    html = tmp_path / "p.html"
    argv = ["probe", "--model", "tiny", "--data", str(data), "--sites", "blocks.0.resid_post,blocks.1.resid_post",
            "--html", str(html)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "blocks.1.resid_post" in out and "control" in out
    assert "<table" in html.read_text()


def test_probe_bad_data_is_one_line(tiny, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 1}\n{oops\n')
    for argv, fragment in [
        (["probe", "--model", "tiny", "--data", str(bad)], "line 2"),
        (["probe", "--model", "tiny", "--data", str(tmp_path / "none.jsonl")], "no data file"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], err
