"""``tsi diff MODEL_A MODEL_B --data FILE --out DIR`` on tiny models."""

from __future__ import annotations

import json

import torch_shard_interpret as tsi
from _cli import preload
from torch_shard_interpret.cli.main import main
from torch_shard_interpret.testing._models import tiny_hf_model, tiny_tokenizer


def test_diff_report(tmp_path, monkeypatch, capsys):
    tok = tiny_tokenizer()
    preload(monkeypatch, "tiny", tsi.wrap(tiny_hf_model("llama"), tok))
    data = tmp_path / "texts.txt"
    data.write_text(
        "\n".join(f"the {w} was very good and the house was red ." for w in ("cat", "dog", "car", "tree"))
    )
    out = tmp_path / "out"
    code = main(
        ["diff", "tiny", "tiny:int4", "--data", str(data), "--out", str(out), "--steps", "30", "--k", "4"]
    )
    assert code == 0
    stdout = capsys.readouterr().out
    assert "blocks.1.resid_post" in stdout and "crosscoder at blocks.1.resid_post" in stdout
    payload = json.loads((out / "diff.json").read_text())
    assert all(v > 0 for v in payload["divergence"].values())  # int4 rounding changed every site
    html = (out / "report.html").read_text()
    assert "B-only latents" in html and "A-only latents" in html and "divergence" in html
    assert (out / "crosscoder" / "crosscoder.safetensors").is_file()
    # A second run into the same folder is refused without --overwrite, and allowed with it.
    assert main(["diff", "tiny", "tiny", "--data", str(data), "--out", str(out), "--steps", "0"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (
        main(["diff", "tiny", "tiny", "--data", str(data), "--out", str(out), "--steps", "0", "--overwrite"])
        == 0
    )
    assert all(v == 0 for v in json.loads((out / "diff.json").read_text())["divergence"].values())
