"""``tsi serve`` refuses strangers: exact Host allowlist, same-origin /api, the start-up token, deep JSON."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

import torch_shard_interpret as tsi  # noqa: E402
from torch_shard_interpret.serve import create_app  # noqa: E402
from torch_shard_interpret.serve._guard import host_name  # noqa: E402
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer  # noqa: E402

LOCAL = ["127.0.0.1", "localhost", "::1"]
BODY = {"prompt": "the cat is"}


@pytest.fixture(scope="module")
def model():
    return tsi.wrap(tiny_hf_model(), tiny_tokenizer())


@pytest.fixture(scope="module")
def local(model):
    with TestClient(
        create_app(model, allowed_hosts=LOCAL, attention=False), base_url="http://127.0.0.1:8765"
    ) as c:
        yield c


@pytest.mark.parametrize(
    "header, name",
    [("127.0.0.1:8765", "127.0.0.1"), ("[::1]:80", "::1"), ("[::1]", "::1"), ("LocalHost", "localhost"),
     ("127.0.0.1.evil.example:8765", "127.0.0.1.evil.example")],
)  # fmt: skip
def test_host_name_parsing(header, name):
    assert host_name(header) == name


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1.evil.example", "127.0.0.1.evil.example:8765", "localhost.evil.example", "evil.example",
     "127.0.0.10", "127.0.0.", "xlocalhost", "", "[::1].evil"],
)  # fmt: skip
def test_foreign_host_refused(local, host):
    r = local.get("/api/info", headers={"host": host})
    assert r.status_code == 400, (host, r.text)
    assert "is not served here" in r.json()["error"]


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "[::1]:8765", "localhost"])
def test_local_host_accepted(local, host):
    assert local.get("/api/info", headers={"host": host}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "http://127.0.0.1.evil.example:8765"},
        {"origin": "http://127.0.0.1:9999"},  # another port is another origin
        {"origin": "null"},
        {"origin": "file://"},
        {"sec-fetch-site": "cross-site"},
    ],
)
@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/api/info", None),
        ("GET", "/api/saes", None),
        ("GET", "/api/sites", None),
        ("POST", "/api/run", BODY),
        ("POST", "/api/jobs", {"kind": "run", "params": BODY}),
        ("DELETE", "/api/jobs/abc", None),
    ],
)
def test_cross_origin_api_refused(local, headers, method, path, body):
    r = local.request(method, path, json=body, headers=headers)
    assert r.status_code == 403, r.text
    assert "refused" in r.json()["error"]


def test_same_origin_accepted(local, model):
    r = local.post(
        "/api/run", json=BODY, headers={"origin": "http://127.0.0.1:8765", "sec-fetch-site": "same-origin"}
    )
    assert r.status_code == 200, r.text
    expected = model.run(BODY["prompt"]).logits[0, -1].argmax().item()
    assert r.json()["predictions"][-1][0]["id"] == expected


def test_side_effect_get_refused_cross_site(model, tmp_path):
    """An <img src=/api/saes/x/latents/0> on a foreign page must not make the server compute statistics."""
    import torch
    from safetensors.torch import save_file

    sae, d, n = tmp_path / "s", model.cfg.d_model, 16
    sae.mkdir()
    save_file(
        {
            "W_enc": torch.randn(d, n),
            "b_enc": torch.zeros(n),
            "W_dec": torch.randn(n, d),
            "b_dec": torch.zeros(d),
        },
        str(sae / "sae_weights.safetensors"),
    )
    (sae / "cfg.json").write_text(
        json.dumps({"d_in": d, "d_sae": n, "hook_name": "blocks.1.hook_resid_post"})
    )
    app = create_app(model, saes=[sae], allowed_hosts=LOCAL, attention=False)
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        r = c.get("/api/saes/s/latents/0", headers={"sec-fetch-site": "cross-site"})
        assert r.status_code == 403
        assert app.state.tsi.saes["s"].stats is None  # nothing was computed
        assert c.get("/api/saes/s/latents/0").status_code == 200
        assert app.state.tsi.saes["s"].stats is not None


def test_token_required(model):
    app = create_app(model, allowed_hosts=LOCAL, attention=False, token="s3cret-token")
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        assert c.get("/api/info").status_code == 401
        assert c.get("/").status_code == 401
        assert c.get("/api/info", headers={"x-tsi-token": "wrong"}).status_code == 401
        assert c.get("/api/info", params={"token": "s3cret-tokeX"}).status_code == 401
        assert c.get("/api/info", headers={"x-tsi-token": "s3cret-token"}).status_code == 200
        # The URL parameter once, then the cookie it set.
        first = c.get("/", params={"token": "s3cret-token"})
        assert first.status_code == 200
        assert "tsi_token=s3cret-token" in first.headers["set-cookie"]
        assert "HttpOnly" in first.headers["set-cookie"] and "SameSite=Strict" in first.headers["set-cookie"]
        assert c.get("/api/info").status_code == 200  # the client now sends the cookie
        c.cookies.clear()
        assert c.get("/api/info").status_code == 401


def test_token_does_not_replace_host_check(model):
    app = create_app(model, allowed_hosts=LOCAL, attention=False, token="t")
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        r = c.get("/api/info", headers={"host": "rebind.evil.example", "x-tsi-token": "t"})
        assert r.status_code == 400


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
@pytest.mark.parametrize("opener, closer", [("[", "]"), ('{"a":', "}")])
def test_deep_json_is_400(local, depth, opener, closer):
    body = opener * depth + "1" + closer * depth
    r = local.post("/api/run", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text[:200]
    assert "nested more than 32 levels" in r.json()["error"]


def test_brackets_inside_strings_do_not_count(local):
    body = json.dumps({"prompt": "[[[[" * 50 + '"\\' + "{{{{" * 50})
    r = local.post("/api/run", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
