"""`tsi report` end to end on a tiny model: the HTML, its sections, and clean failures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import torch_shard_interpret as tsi
from _cli import preload
from torch_shard_interpret.cli.main import main
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

PROMPT = "when mary and john went to the store john gave a drink to"
SECTIONS = ('id="tokens"', 'id="lens"', 'id="dla"', 'id="patterns"', 'id="saliency"')


@pytest.fixture
def tiny(monkeypatch):
    """A tiny LLaMA with a word-level tokenizer, reachable as `--model tiny`."""
    model = tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer())
    preload(monkeypatch, "tiny", model)
    return model


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_report_written_with_every_section(tiny, tmp_path, capsys):
    before = tiny.attention
    out = tmp_path / "out"
    code = main(
        ["report", PROMPT, "--model", "tiny", "--out", str(out), "--target", " mary", "--top-heads", "3"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    path = out / "report.html"
    assert _files(out) == [path]  # no temporary file left next to it
    html = path.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert section in html
    assert html.count('class="head-card"') == 3
    assert "Logit lens" in html and "Direct logit attribution" in html and "eager" in html
    # Self-contained: nothing is fetched from anywhere.
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "http://" not in html and "https://" not in html and "<script src" not in html
    assert str(path.resolve()) in captured.out.strip().splitlines()[-1]
    assert "direct logit attribution" in captured.out
    assert tiny.attention == before  # the eager switch is undone


def test_default_out_dir_is_slug_of_prompt(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["report", PROMPT, "--model", "tiny", "--baseline", " john", "--top-heads", "0"]) == 0
    expected = tmp_path / "reports" / "when-mary-and-john-went-to-the-store-john-gave-a" / "report.html"
    assert expected.is_file()
    html = expected.read_text(encoding="utf-8")
    assert "− logit(&#x27;john&#x27;)" in html  # the baseline made it into the attributed quantity


def test_build_report_api(tiny):
    from torch_shard_interpret.report import build_report, render

    data = build_report(tiny, PROMPT, top_heads=2)
    assert data.target == data.top[0][1] and data.target_source == "top prediction"
    assert len(data.patterns) == 2 and data.patterns[0].pattern.shape == (len(data.tokens),) * 2
    assert data.saliency.shape == (len(data.tokens),)
    assert sum(data.dla.components.values()) + data.dla.remainder == data.dla.total
    assert "<svg" in render(data)


BAD = [
    (["report", PROMPT, "--model", "no-such-model"], "cannot load model"),
    (["report", "   ", "--model", "tiny"], "prompt is empty"),
    (["report", " ".join(["mary"] * 200), "--model", "tiny"], "reads at most 128"),
    (["report", PROMPT, "--model", "tiny", "--target", "mary john"], "not one"),
    (["report", PROMPT, "--model", "tiny", "--target", "mary", "--top-heads", "-1"], "--top-heads"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=["model", "empty", "too-long", "target", "top-heads"])
def test_bad_input_one_line_no_file(tiny, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # an unknown name must not wait for the network
    out = tmp_path / "out"
    code = main([*argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tsi: error: ") and message in lines[0]
    assert "Traceback" not in err
    assert not out.exists() or _files(out) == []


def test_unwritable_out(tiny, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    for out in (blocker, blocker / "sub"):
        code = main(["report", PROMPT, "--model", "tiny", "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(err) == 1, err
        assert err[0].startswith("tsi: error: ") and "not a directory" in err[0]
    assert blocker.read_text() == "not a directory"
    assert _files(tmp_path) == [blocker]


def test_failed_write_leaves_nothing(tiny, tmp_path, capsys, monkeypatch):
    """A failure while writing (here: os.replace) leaves neither report.html nor the temporary file."""
    from torch_shard_interpret.report import _build

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_build.os, "replace", boom)
    out = tmp_path / "out"
    code = main(["report", PROMPT, "--model", "tiny", "--out", str(out), "--top-heads", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "No space left" in err[0]
    assert _files(out) == []


def test_write_report_writes_the_file_whole_and_refuses_a_file_as_folder(tmp_path):
    html = "<!doctype html><p>r\u00e9sum\u00e9</p>"
    path = tsi.report.write_report(html, tmp_path / "new" / "dir")
    assert path == tmp_path / "new" / "dir" / "report.html" and path.read_text(encoding="utf-8") == html
    assert (
        _files(tmp_path) == [path] and oct(path.stat().st_mode & 0o777) == "0o644"
    )  # shareable, no temp left
    tsi.report.write_report("<p>second</p>", path.parent)  # replaced in place
    assert path.read_text() == "<p>second</p>" and _files(tmp_path) == [path]
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(tsi.report.ReportOutputError):
        tsi.report.write_report(html, blocker)
    assert blocker.read_text() == "x"
