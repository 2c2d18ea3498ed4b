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


def _pair(model: str) -> list[str]:
    """``tsi patch`` arguments up to ``--baseline`` (its value comes next)."""
    return [
        "patch",
        "--model",
        model,
        "--clean",
        CLEAN,
        "--corrupt",
        CORRUPT,
        "--target",
        "mary",
        "--baseline",
    ]


def test_patch_heads_grid_on_gqa_keys(tiny, tmp_path, capsys):
    args = _pair(tiny)
    code = main(
        [*args, "john", "--sites", "blocks.*.attn.k", "--heads", "grid", "--out", str(tmp_path / "o")]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    model = tsi.wrap(tiny_hf_model("llama", seed=1), tiny_tokenizer())
    mary, john = model.token_id("mary"), model.token_id("john")
    want = tsi.patching.activation_patching(
        model, CLEAN, CORRUPT, lambda lg: lg[:, -1, mary] - lg[:, -1, john], sites="blocks.*.attn.k",
        heads="grid", progress=False,
    )  # fmt: skip
    assert want.effects.shape[2] == 2 and "position · head" in out
    site, label, effect, _ = want.top(1)[0]
    assert f"{effect:+.3f}" in next(line for line in out.splitlines() if site in line and "KV" in line)
    html = (tmp_path / "o" / "patching.html").read_text()
    assert "<h3>blocks.0.attn.k</h3>" in html and "<h3>blocks.1.attn.k</h3>" in html and "KV1 (H2-H3)" in html
    code = main([*args, "john", "--heads", "grid", "--method", "attribution", "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--method exact only" in err


def test_patch_pattern_heads_switches_to_eager_attention(tiny, tmp_path, capsys):
    from torch_shard_interpret.cli._common import PRELOADED

    assert PRELOADED[tiny].module.config._attn_implementation != "eager"
    args = _pair(tiny)
    with pytest.warns(UserWarning, match="eager"):
        code = main(
            [*args, "john", "--sites", "blocks.1.attn.pattern", "--heads", "--out", str(tmp_path / "o")]
        )
    out = capsys.readouterr().out
    assert code == 0, out
    assert PRELOADED[tiny].module.config._attn_implementation == "eager"
    assert "blocks.1.attn.pattern" in out and "H3" in (tmp_path / "o" / "patching.html").read_text()
