"""Scoreboard rows, JSON round trip, HTML, the check runner and `tsi bench`."""

from __future__ import annotations

import json
import math
import sys

import pytest

import torch_shard_interpret as tsi
from torch_shard_interpret.cli.main import main

CHECK_SRC = """
TOOLS = ("fake.good", "fake.bad")
def checks(quick):
    return [
        {"tool": "fake.good", "task": "t", "metric": "m", "value": 0.97 if quick else 0.99, "threshold": 0.95, "higher_is_better": True},
        {"tool": "fake.bad", "task": "t", "metric": "err", "value": 0.2, "threshold": 0.05, "higher_is_better": False, "note": "too big"},
    ]
def broken(quick):
    raise RuntimeError("boom")
"""


@pytest.fixture
def fake_checks(tmp_path, monkeypatch):
    (tmp_path / "tsi_fake_check.py").write_text(CHECK_SRC)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("tsi_fake_check", None)
    paths = ("tsi_fake_check:checks", "tsi_fake_check:broken")
    monkeypatch.setattr("torch_shard_interpret.bench._suite.CHECKS", paths)
    return paths


def test_run_collects_rows_and_passes(fake_checks):
    board = tsi.bench.run("quick", progress=False)
    good = board.row("fake.good", "t", "m")
    assert good["value"] == 0.97 and good["passed"] is True
    assert board.row("fake.bad", "t", "err")["passed"] is False  # lower is better, 0.2 > 0.05
    err = [r for r in board.rows if r["task"] == "error"]
    assert len(err) == 1 and "boom" in err[0]["note"] and not err[0]["passed"] and math.isnan(err[0]["value"])
    assert not board.passed and len(board.failures) == 2
    assert tsi.bench.run("full", progress=False).row("fake.good", "t", "m")["value"] == 0.99
    only = tsi.bench.run("quick", tools=["fake.good"], progress=False)
    assert [r["tool"] for r in only.rows] == ["fake.good"]
    with pytest.raises(tsi.InputError, match="unknown suite"):
        tsi.bench.run("medium")


def test_save_load_html(fake_checks, tmp_path):
    board = tsi.bench.run("quick", progress=False)
    path = board.save(tmp_path / "b.json")
    back = tsi.bench.Scoreboard.load(path)
    assert [(r["tool"], r["value"], r["passed"]) for r in back.rows][:2] == [
        ("fake.good", 0.97, True),
        ("fake.bad", 0.2, False),
    ]
    assert json.loads(path.read_text())["suite"] == "quick"
    html = board.to_html()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "fake.bad" in html and "FAIL" in html
    assert "1 of 3 rows pass" in html
    with pytest.raises(tsi.InputError, match="cannot read a scoreboard"):
        tsi.bench.Scoreboard.load(tmp_path / "missing.json")


def test_cli_writes_json_and_html_and_refuses_non_empty_out(fake_checks, tmp_path, capsys):
    out = tmp_path / "board"
    assert main(["bench", "--quick", "--no-progress", "--out", str(out)]) == 1  # a row fails
    printed = capsys.readouterr().out
    assert "FAIL  fake.bad" in printed and "PASS  fake.good" in printed
    assert tsi.bench.Scoreboard.load(out / "scoreboard.json").row("fake.good", "t", "m")["passed"]
    assert "<svg" in (out / "scoreboard.html").read_text()
    assert main(["bench", "--quick", "--no-progress", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    code = main(
        ["bench", "--quick", "--no-progress", "--tools", "fake.good", "--out", str(out), "--overwrite"]
    )
    assert code == 0


def test_every_check_declares_its_tools():
    # Without TOOLS, run(tools=[...]) runs the check in full and then drops its rows: the docs' one-tool
    # bench (`tools=["analysis.fourier"]`) ran the trojan, anomaly, vision and circuit checks, over 4 minutes.
    import importlib

    for path in tsi.bench.CHECKS:
        module = importlib.import_module(path.partition(":")[0])
        tools = getattr(module, "TOOLS", None)
        assert tools and all(isinstance(t, str) and t for t in tools), f"{path} declares no TOOLS"


def test_a_check_of_other_tools_is_not_run(fake_checks, monkeypatch):
    import tsi_fake_check

    called = []
    monkeypatch.setattr(tsi_fake_check, "checks", lambda quick: called.append(quick) or [])
    tsi.bench.run("quick", tools=["other"], checks=["tsi_fake_check:checks"], progress=False)
    assert called == []
