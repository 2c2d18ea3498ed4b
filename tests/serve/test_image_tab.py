"""The Image tab: ``POST /api/vision`` (and its job) with real PNG/JPEG uploads, refusals, and the temporary folder."""

from __future__ import annotations

import io
import struct
import tempfile
import time

import pytest

import torch_shard_interpret as tsi
import torch_shard_interpret.vision as tv
from torch_shard_interpret._render import png_bytes

pytest.importorskip("PIL")

OPTS = "steps=4&top_channels=1"


@pytest.fixture(scope="module")
def digit():
    from torch_shard_interpret.vision._data import digits

    images, labels = digits()
    ink_on_white = (1 - images[5, 0].numpy()).repeat(4, 0).repeat(4, 1)  # a 32x32 picture of a 5
    return png_bytes(ink_on_white), int(labels[5])


def upload(client, data, ctype="image/png", query=OPTS, path="/api/vision"):
    return client.post(f"{path}?{query}", content=data, headers={"Content-Type": ctype})


def wait_job(client, job_id, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = client.get(f"/api/jobs/{job_id}").json()
        if state["status"] not in ("queued", "running"):
            return state
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def one_sentence(r, status, *words):
    assert r.status_code == status, r.text
    msg = r.json()["error"]
    assert "\n" not in msg and msg.count(". ") == 0, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_png_upload_gives_the_vision_report(client, digit):
    data, label = digit
    r = upload(client, data, query=OPTS + "&name=five.png")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["prediction"] == label and out["target"] == label
    assert out["image"] == {"type": "PNG", "width": 32, "height": 32, "bytes": len(data)}
    html = out["html"]
    for part in ("five.png", "Prediction", "saliency", "integrated gradients", "Grad-CAM", "Checkerboard"):
        assert part in html
    assert html.count("<img") >= 1 + 8 + 1  # the input, eight attribution overlays, one feature visualisation
    assert "<script" not in html and "http://" not in html
    # the same numbers as the vision API called directly on the same bytes
    cnn, labels = tv.load("digits-cnn", progress=False), tv.load("digits-cnn-random-labels", progress=False)
    _, direct = tv.report_from_bytes(
        cnn, data, name="five.png", vis_steps=4, top_channels=1, label_model=labels
    )
    assert out["summary"]["probabilities"] == pytest.approx(direct["probabilities"], abs=1e-5)
    assert out["summary"]["top_channels"] == direct["top_channels"]
    assert set(out["flagged"]) == {k for k, s in direct["sanity"].items() if s["flagged"]}
    assert out["summary"]["sanity"]["saliency"]["label_similarity"] is not None  # the label check ran too


def test_jpeg_upload_as_a_job(client, digit):
    from PIL import Image

    data, label = digit
    rgb = (255 * tv._imagefile.decode(data)).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    r = upload(client, buf.getvalue(), "image/jpeg", query=OPTS + "&target=3", path="/api/vision/job")
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "done", job
    res = job["result"]
    assert res["image"]["type"] == "JPEG" and res["target"] == 3 and res["prediction"] == label


def _png_header(width, height):
    """The first bytes of a PNG that says it is ``width x height`` (the size is read before any decoding)."""
    ihdr = struct.pack(">II", width, height) + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0" * 4


@pytest.fixture
def no_model_work(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a refused upload reached the vision report")

    monkeypatch.setattr(tv, "report_from_bytes", refuse)


@pytest.mark.parametrize(
    "data, ctype, status, words",
    [
        (b"hello, not an image", "image/png", 415, ["not a PNG or JPEG image", "upload a PNG or JPEG file"]),
        (b"GIF89a" + bytes(40), "image/png", 415, ["not a PNG or JPEG image"]),
        (b"BM" + bytes(40), "image/jpeg", 415, ["not a PNG or JPEG image"]),
        (_png_header(32, 32), "text/plain", 415, ["Content-Type image/png or image/jpeg", "'text/plain'"]),
        (_png_header(32, 32), "application/json", 415, ["Content-Type image/png or image/jpeg"]),
        (b"", "image/png", 400, ["empty"]),
        (_png_header(5000, 4000), "image/png", 413, ["5000x4000", "at most 4,194,304 pixels", "2048x2048"]),
        (
            b"\x89PNG\r\n\x1a\n" + bytes(4 * 2**20),
            "image/png",
            413,
            ["upload a PNG or JPEG image of at most 4 MiB"],
        ),
    ],
)
def test_bad_uploads_get_one_sentence_4xx(client, no_model_work, data, ctype, status, words):
    one_sentence(upload(client, data, ctype), status, *words)
    one_sentence(upload(client, data, ctype, path="/api/vision/job"), status, *words)


def test_caps_are_the_apps(tiny_model, digit, no_model_work):
    from starlette.testclient import TestClient

    from torch_shard_interpret.serve import create_app

    app = create_app(tiny_model, max_image_bytes=2000, max_image_pixels=16 * 16)
    with TestClient(app) as c:
        one_sentence(
            upload(c, digit[0]), 413, "32x32 = 1,024 pixels", "at most 256 pixels (for example 16x16)"
        )
        big = b"\x89PNG\r\n\x1a\n" + bytes(3000)
        one_sentence(upload(c, big), 413, "3,008 bytes", "at most 2 KiB (2,000 bytes)")

        def chunks():  # no Content-Length: the cap holds while the body is read
            yield big[:1500]
            yield big[1500:]

        r = c.post("/api/vision", content=chunks(), headers={"Content-Type": "image/png"})
        one_sentence(r, 413, "over 2,000 bytes", "upload a PNG or JPEG image")
        # other endpoints keep the ordinary body limit
        assert c.post("/api/run", json={"prompt": "the cat"}).status_code == 200


def test_bad_options_are_refused_before_the_body_is_used(client, digit, no_model_work):
    one_sentence(upload(client, digit[0], query="steps=0"), 400, "'steps' must be between 1 and 512")
    one_sentence(upload(client, digit[0], query="target=x"), 400, "'target' must be an integer")


class _Recorder:
    """``report_from_bytes`` that records the temporary folder's files while it runs, then does ``then``."""

    def __init__(self, root, then):
        self.root, self.then, self.seen = root, then, []

    def __call__(self, model, data, **kw):
        self.seen = sorted(p.name for p in self.root.rglob("*") if p.is_file())
        (upload_file,) = list(self.root.rglob("upload.*"))
        assert upload_file.read_bytes() == data
        return self.then(model, data, **kw)


@pytest.fixture
def temp_root(tmp_path, monkeypatch):
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_upload_lives_only_in_a_removed_temporary_folder(client, digit, temp_root, monkeypatch):
    rec = _Recorder(temp_root, tv.report_from_bytes)
    monkeypatch.setattr(tv, "report_from_bytes", rec)
    assert upload(client, digit[0]).status_code == 200
    assert rec.seen == ["upload.png"]  # written there, and only there
    assert list(temp_root.iterdir()) == []


@pytest.mark.parametrize(
    "exc, status", [(RuntimeError("boom"), 500), (tsi.InputError("the image could not be decoded"), 400)]
)
def test_temporary_folder_is_removed_when_the_report_raises(
    client, digit, temp_root, monkeypatch, exc, status
):
    def fail(model, data, **kw):
        raise exc

    rec = _Recorder(temp_root, fail)
    monkeypatch.setattr(tv, "report_from_bytes", rec)
    r = upload(client, digit[0])
    assert r.status_code == status and rec.seen == ["upload.png"]
    assert list(temp_root.iterdir()) == []
    job = wait_job(client, upload(client, digit[0], path="/api/vision/job").json()["id"])
    assert job["status"] == "error" and job["error_status"] == status
    assert list(temp_root.iterdir()) == []


def test_tab_off_without_a_vision_model(tiny_model, digit):
    from starlette.testclient import TestClient

    from torch_shard_interpret.serve import create_app

    with TestClient(create_app(tiny_model, vision_model=None)) as c:
        assert c.get("/api/vision").json()["enabled"] is False
        one_sentence(upload(c, digit[0]), 409, "--vision-model")
        one_sentence(upload(c, digit[0], path="/api/vision/job"), 409, "--vision-model")


def test_info_of_the_tab(client):
    info = client.get("/api/vision").json()
    assert info["enabled"] and info["model"] == "digits-cnn"
    assert info["types"] == ["image/jpeg", "image/png"] and info["max_bytes"] == 4 * 2**20


def test_cancelled_image_job_stops_and_leaves_no_folder(client, digit, temp_root, monkeypatch):
    import threading

    started = threading.Event()

    def slow(model, data, step=None, **kw):  # a report whose phases never end until the job is cancelled
        started.set()
        deadline = time.time() + 30
        while time.time() < deadline:
            step("a phase")  # raises Cancelled once DELETE /api/jobs/{id} has run
            time.sleep(0.02)
        raise AssertionError("the job was not cancelled")

    monkeypatch.setattr(tv, "report_from_bytes", _Recorder(temp_root, slow))
    job_id = upload(client, digit[0], path="/api/vision/job").json()["id"]
    assert started.wait(30)
    assert client.delete(f"/api/jobs/{job_id}").status_code == 200
    assert wait_job(client, job_id)["status"] == "cancelled"
    assert list(temp_root.iterdir()) == []
