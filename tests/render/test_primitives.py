"""The leaf rendering and progress primitives: real PNG bytes, charts that plot, quiet logs."""

import io
import struct
import sys
import zlib

import numpy as np

from torch_shard_interpret import _render
from torch_shard_interpret._progress import progress, track


def _decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, _, colour, *_ = header
    ch = 3 if colour == 2 else 1
    raw = zlib.decompress(idat)
    rows = [raw[i * (w * ch + 1) + 1 : (i + 1) * (w * ch + 1)] for i in range(h)]
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(h, w, ch).squeeze(-1 if ch == 1 else None)


def test_png_round_trips_rgb_and_grey():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    assert np.array_equal(_decode_png(_render.png_bytes(rgb)), rgb)
    grey = np.linspace(0, 1, 12).reshape(3, 4)
    assert np.array_equal(_decode_png(_render.png_bytes(grey)), (grey * 255 + 0.5).astype(np.uint8))
    assert _render.png_data_uri(rgb).startswith("data:image/png;base64,")


def test_line_chart_plots_every_finite_point_and_escapes_labels():
    svg = _render.line_chart([("a<b", [1, 2, 3], [0.0, float("nan"), 1.0]), ("c", [1, 3], [1.0, 0.5])])
    assert svg.count("<polyline") == 2
    assert "a&lt;b" in svg and "a<b" not in svg
    first = svg.split('points="')[1].split('"')[0].split()
    assert len(first) == 2  # the NaN point is skipped


def test_progress_prints_few_lines_off_a_terminal():
    out = io.StringIO()
    with progress(total=1000, desc="job", unit="step", stream=out) as bar:
        for _ in range(1000):
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert 5 <= len(lines) <= 11 and "\r" not in out.getvalue()
    assert lines[-1].startswith("job: 1000/1000 step (100%)")


def test_disabled_progress_is_silent_and_track_yields_everything(capsys):
    assert list(track(range(7), enabled=False)) == list(range(7))
    assert capsys.readouterr().err == ""


def test_a_bar_finished_after_its_stream_closed_does_not_raise(monkeypatch):
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    items = track(range(100), desc="late")
    next(items), next(items)  # one item done
    first.close()  # the stderr of the bar's start is gone (as pytest's capture is after a test)
    later = io.StringIO()
    monkeypatch.setattr(sys, "stderr", later)
    items.close()  # the generator's finally emits its last line: to the stderr of now
    assert "late: 1/100" in later.getvalue()
    explicit = io.StringIO()
    bar = progress(total=4, desc="x", stream=explicit)
    explicit.close()
    bar.update(4)  # a closed explicit stream: progress gives up quietly
    bar.close()
