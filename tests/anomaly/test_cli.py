"""``tsi anomaly fit`` / ``score`` end to end on a tiny model (through the PRELOADED registry)."""

from __future__ import annotations

import json

import pytest

import torch_shard_interpret as tsi
from _cli import preload
from torch_shard_interpret.cli.main import main
from torch_shard_interpret.testing._models import tiny_hf_model, tiny_tokenizer

PROSE = [f"the {a} {b} was very {c} ." for a in ("cat", "dog", "car") for b in ("tree", "house", "book")
         for c in ("good", "bad", "happy")]  # fmt: skip
ODD = [". . ! ? , , . !", "? ? ? ! ! ! . .", ", , , , ! ? . .", "! . ? , ! . ? ,"]


@pytest.fixture
def files(tmp_path, monkeypatch):
    preload(monkeypatch, "tiny", tsi.wrap(tiny_hf_model("llama"), tiny_tokenizer()))
    (tmp_path / "trusted.txt").write_text("\n".join(PROSE[:20]) + "\n")
    (tmp_path / "normal.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in PROSE[20:]) + "\n")
    (tmp_path / "odd.txt").write_text("\n".join(ODD) + "\n")
    return tmp_path


def test_fit_then_score_and_evaluate(files, capsys):
    out = files / "det"
    assert (
        main(["anomaly", "fit", "--model", "tiny", "--data", str(files / "trusted.txt"), "--out", str(out)])
        == 0
    )
    assert json.loads((out / "detector.json").read_text())["meta"]["model"] == "tiny"
    assert (
        main(
            ["anomaly", "score", str(out), "--data", str(files / "odd.txt"), "--json", str(files / "s.json")]
        )
        == 0
    )
    assert len(json.loads((files / "s.json").read_text())["scores"]) == len(ODD)
    capsys.readouterr()
    code = main(
        [
            "anomaly",
            "score",
            str(out),
            "--data",
            str(files / "normal.jsonl"),
            "--anomalous",
            str(files / "odd.txt"),
        ]
    )
    assert code == 0 and "AUROC" in capsys.readouterr().out


def _fit_args(files, out):
    return ["anomaly", "fit", "--model", "tiny", "--data", str(files / "trusted.txt"), "--out", str(out)]


def test_non_empty_out_is_refused(files, capsys):
    (files / "det").mkdir()
    (files / "det" / "x").write_text("keep")
    code = main(_fit_args(files, files / "det"))
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite" in err and (files / "det" / "x").read_text() == "keep"


def test_bad_detector_is_one_line(files, capsys):
    assert main([*_fit_args(files, files / "d"), "--detector", "nope"]) == 2
    err = capsys.readouterr().err
    assert "choose one of" in err and len(err.strip().splitlines()) == 1


def test_missing_data_file(files, capsys):
    assert main(_fit_args(files, files / "d")[:5] + [str(files / "nope.txt"), "--out", str(files / "d")]) == 2
    assert "no data file" in capsys.readouterr().err
