"""``tsi vision-report``: one offline page; refuses a non-empty --out and files that are not images."""

from __future__ import annotations

import json

import numpy as np
import pytest

import torch_shard_interpret as tsi
from torch_shard_interpret._render import png_bytes
from torch_shard_interpret.cli.main import main
from torch_shard_interpret.vision._imagefile import decode, to_model_input


@pytest.fixture
def digit_png(tmp_path, digits_data):
    images, labels = digits_data
    ink_on_white = (1 - images[3, 0].numpy()).repeat(8, 0).repeat(8, 1)  # a 64x64 picture of a 3
    path = tmp_path / "three.png"
    path.write_bytes(png_bytes(ink_on_white))
    return path, int(labels[3])


def test_report_writes_one_offline_page(tmp_path, digit_png, capsys):
    path, label = digit_png
    out = tmp_path / "out"
    assert main(["vision-report", str(path), "--out", str(out), "--steps", "8"]) == 0
    html = (out / "vision-report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prediction"] == label
    assert "http://" not in html and "https://" not in html and "<script src" not in html
    for part in ("Prediction", "integrated gradients", "Grad-CAM", "guided backprop", "Feature visualisations",
                 "Checkerboard", "sanity"):  # fmt: skip
        assert part in html
    assert html.count("<img") >= 1 + 8 + 4
    assert summary["sanity"]["saliency"]["flagged"] is False
    assert summary["sanity"]["guided backprop"]["label_similarity"] is not None
    assert f"predicted class {label}" in capsys.readouterr().out
    # a second run into the same folder is refused, and accepted with --overwrite
    assert main(["vision-report", str(path), "--out", str(out), "--steps", "2"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["vision-report", str(path), "--out", str(out), "--steps", "2", "--overwrite"]) == 0


def test_bad_files_are_refused_in_one_sentence(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["vision-report", str(text), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "not a PNG, JPEG" in err and err.count("\n") == 1
    assert main(["vision-report", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")]) == 2
    assert "exists" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    assert main(["vision-report", str(broken), "--out", str(tmp_path / "o")]) == 2
    assert "could not be decoded" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_report_from_uploaded_bytes_writes_nothing(tmp_path, monkeypatch, cnn, digits_data):
    import torch_shard_interpret.vision as tv

    monkeypatch.chdir(tmp_path)
    images, labels = digits_data
    data = png_bytes((1 - images[5, 0].numpy()).repeat(4, 0).repeat(4, 1))
    html, summary = tv.report_from_bytes(cnn, data, name="five.png", vis_steps=4, top_channels=1)
    assert summary["prediction"] == int(labels[5]) and "five.png" in html
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(tsi.InputError, match="MiB"):
        tv.report_from_bytes(cnn, b"\x89PNG\r\n\x1a\n" + bytes(21 * 2**20))


def test_decode_and_resize():
    rgb = decode(png_bytes(np.full((16, 16), 0.9)))
    assert rgb.shape == (16, 16, 3) and abs(float(rgb.mean()) - 0.9) < 0.01
    x = to_model_input(rgb, (1, 1, 8, 8))
    assert x.shape == (1, 1, 8, 8)
