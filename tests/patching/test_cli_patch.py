"""``tsi patch`` on a tiny model (preloaded under a name, as ``tsi report`` tests do)."""

from __future__ import annotations

import pytest

import torch_shard_interpret as tsi
from _cli import preload
from torch_shard_interpret.cli.main import main
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

CLEAN = "when mary and john went to the store , john gave a drink to"
CORRUPT = "when john and mary went to the store , mary gave a drink to"


@pytest.fixture
def tiny(monkeypatch):
    preload(monkeypatch, "tiny", tsi.wrap(tiny_hf_model("llama", seed=1), tiny_tokenizer()))
    return "tiny"


@pytest.mark.parametrize("method", ["exact", "attribution"])
def test_patch_writes_html_and_prints_a_table(tiny, tmp_path, capsys, method):
    args = ["patch", "--model", tiny, "--clean", CLEAN, "--corrupt", CORRUPT, "--target", "mary"]
    code = main([*args, "--baseline", "john", "--method", method, "--out", str(tmp_path / "o"), "--top", "4"])
    out = capsys.readouterr().out
    assert code == 0, out
    html = (tmp_path / "o" / "patching.html").read_text()
    assert "<svg" in html and "<script" not in html
    assert "top 4 cells" in out and "blocks." in out and "heatmap:" in out
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["patching.html"]  # no temporary file left


def test_patch_errors_are_one_line(tiny, tmp_path, capsys):
    args = ["patch", "--model", tiny, "--clean", CLEAN, "--corrupt", "when john and mary", "--target", "mary"]
    code = main([*args, "--baseline", "john", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "same length" in err
    assert not (tmp_path / "o").exists()
    (tmp_path / "file").write_text("x")
    code = main(["patch", "--model", tiny, "--clean", CLEAN, "--corrupt", CORRUPT, "--target", "mary",
                 "--baseline", "john", "--out", str(tmp_path / "file")])  # fmt: skip
    assert code == 2 and "is a file" in capsys.readouterr().err
