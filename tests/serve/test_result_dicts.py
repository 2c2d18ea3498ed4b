"""The lens, DLA and patching endpoints return the result's ``to_dict()``, holding every field app.js reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import torch_shard_interpret as tsi

APP_JS = Path(tsi.__file__).parent / "serve" / "static" / "js" / "app.js"
PROMPT = "the cat is very good"


def _read_by(function: str) -> set[str]:
    """The response fields (``r.x``, ``r.x.y``) that ``function`` in app.js reads."""
    text = APP_JS.read_text(encoding="utf-8")
    start = text.index(f"async function {function}(")
    body = text[start : text.index("\n}\n", start)]
    return set(re.findall(r"\br\.(\w+(?:\.(?!map\b|reduce\b|flat\b|slice\b|forEach\b|length\b)\w+)?)", body))


def _get(data: dict, path: str):
    for part in path.split("."):
        assert isinstance(data, dict) and part in data, f"the response lacks {path!r}"
        data = data[part]
    return data


def _same(a, b) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, float):
        assert b == pytest.approx(a, abs=1e-5)
    else:
        assert a == b


def test_the_js_reads_fields_of_each_result():
    assert {"layers", "tokens", "value", "top", "rank", "target.token", "value_label"} <= _read_by("runLens")
    assert {"label", "total", "per_layer.embed", "per_layer.attn", "heads", "top_components"} <= _read_by(
        "runDla"
    )
    assert {"metric", "clean_metric", "effects", "sites", "columns", "normalisation"} <= _read_by("runPatch")


def test_lens_returns_to_dict(client, tiny_model):
    data = client.post("/api/lens", json={"prompt": PROMPT, "target": "good", "top_k": 3}).json()
    res = tsi.lens.logit_lens(tiny_model, PROMPT, target="good")
    _same({"prompt": PROMPT, **res.to_dict(top_k=3)}, data)
    for field in _read_by("runLens"):
        _get(data, field)


def test_dla_returns_to_dict(client, tiny_model):
    data = client.post("/api/dla", json={"prompt": PROMPT, "target": "dog", "baseline": "cat"}).json()
    res = tsi.attribution.direct_logit_attribution(tiny_model, PROMPT, target="dog", baseline="cat")
    _same({"prompt": PROMPT, **res.to_dict()}, data)
    for field in _read_by("runDla"):
        _get(data, field)


def test_patch_returns_to_dict_of_all_sites(client, tiny_model):
    body = {"clean": "mary gave john a book", "corrupt": "john gave mary a book", "target": "mary"}
    data = client.post("/api/patch", json=body).json()
    m = tiny_model.token_id("mary")
    res = tsi.patching.activation_patching(
        tiny_model, body["clean"], body["corrupt"], lambda lg: lg[:, -1, m], sites="blocks.*.resid_pre"
    )
    expected = res.to_dict()
    assert data["metric"] == "logit('mary')" and (data["clean"], data["corrupt"]) == (
        body["clean"],
        body["corrupt"],
    )
    for key in (
        "sites",
        "columns",
        "effects",
        "raw",
        "clean_metric",
        "corrupt_metric",
        "normalisation",
        "positions",
    ):
        _same(expected[key], data[key])
    for field in _read_by("runPatch"):
        _get(data, field)
