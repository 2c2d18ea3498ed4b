"""``tsi circuit`` end to end on the hand-built toy model (registered under a name, as other CLI tests do)."""

from __future__ import annotations

import json

import pytest
import torch

import torch_shard_interpret as tsi
from _cli import preload
from torch_shard_interpret.circuits._toy import toy_circuit
from torch_shard_interpret.cli.main import main


class _Tok:
    """Characters are tokens: enough for the CLI's prompts and single-token targets."""

    pad_token = "~"
    eos_token = "~"

    def __call__(self, text, add_special_tokens=False, **kw):
        return {"input_ids": [ord(c) % 32 for c in text]}


@pytest.fixture
def toy(monkeypatch):
    task = toy_circuit(0)
    model = task.model
    model.tokenizer = _Tok()
    monkeypatch.setattr(model, "to_tokens", lambda text: torch.tensor([[ord(c) % 32 for c in text]]))
    preload(monkeypatch, "toy", model)
    return model


def test_cli_writes_json_and_html(toy, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "circuit",
        "--model",
        "toy",
        "--clean",
        "abcdef",
        "--corrupt",
        "ghijkl",
        "--clean",
        "mnopqr",
        "--corrupt",
        "stuvwx",
        "--target",
        "a",
        "--baseline",
        "b",
        "--method",
        "eap",
        "--top",
        "8",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    loaded = tsi.circuits.load(out / "circuit.json")
    assert len(loaded) <= 8 and len(loaded) > 0
    html = (out / "circuit.html").read_text()
    assert (
        html.startswith("<!DOCTYPE html>")
        and "<svg" in html
        and "CPR" in html
        and "http" not in html.split("xmlns")[0]
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["faithfulness"]["ablation"] == "patch" and len(summary["curve"]["values"]) == 10
    assert "faithfulness" in capsys.readouterr().out
    assert main(args) != 0  # a non-empty --out needs --overwrite
    assert "not empty" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_cli_acdc_and_attribution_graph(toy, tmp_path, capsys):
    tc_dir = tmp_path / "tc"
    tc_dir.mkdir()
    for i in range(2):
        t = tsi.sae.Transcoder(d_in=16, d_sae=24, kind="relu", k=None, seed=i)
        tsi.circuits.save_transcoder(t, tc_dir / f"layer_{i}.safetensors")
    out = tmp_path / "acdc"
    args = ["circuit", "--model", "toy", "--clean", "abcdef", "--corrupt", "ghijkl", "--target", "a",
            "--baseline", "b", "--method", "acdc", "--no-curve", "--transcoders", str(tc_dir), "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "acdc" and summary["info"]["forwards"] * 5 <= summary["info"]["one_per_edge"]
    loaded = tsi.circuits.load(out / "circuit.json")
    assert 0 < len(loaded) == summary["info"]["kept"]
    graph = tsi.circuits.load_attribution_graph(out / "graph.json")
    assert graph["metadata"]["prompt_tokens"] and any(n["feature_type"] == "logit" for n in graph["nodes"])
    assert 0 < summary["attribution_graph"]["completeness"] < 1
    assert "graph.json" in capsys.readouterr().out
    bad = [*args[:-2], "--out", str(tmp_path / "x"), "--tau", "-1"]
    assert main(bad) != 0 and "--tau" in capsys.readouterr().err
