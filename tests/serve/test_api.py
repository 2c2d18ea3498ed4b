"""Every endpoint of the ``tsi serve`` JSON API, with good and bad inputs (starlette TestClient, tiny model)."""

from __future__ import annotations

import time

import pytest
import torch

import torch_shard_interpret as tsi

PROMPT = "the cat is very good"


def post(client, path, body):
    return client.post(path, json=body)


def wait_job(client, job_id, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = client.get(f"/api/jobs/{job_id}").json()
        if state["status"] in ("done", "error"):
            return state
        time.sleep(0.05)
    raise AssertionError("job did not finish")


# ---- pages and info ------------------------------------------------------------------------------
def test_index_and_static(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "/static/js/app.js" in r.text
    assert "Content-Security-Policy" in r.headers
    js = client.get("/static/js/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/app.css").status_code == 200


def test_info(client, tiny_model):
    info = client.get("/api/info").json()
    assert info["model"] == "tiny"
    assert info["n_layers"] == tiny_model.cfg.n_layers
    assert info["attention"]["enabled"] is True
    assert "blocks.0.resid_post" in info["canonical_sites"]
    assert [v["name"] for v in info["vectors"]] == ["love"]
    assert info["saes"][0]["name"] == "tiny-sae" and info["saes"][0]["site"] == "blocks.1.resid_post"


def test_sites(client):
    r = client.get("/api/sites", params={"pattern": "blocks.*.mlp.out"}).json()
    assert r["sites"] == ["blocks.0.mlp.out", "blocks.1.mlp.out"]
    assert len(client.get("/api/sites").json()["sites"]) > 20


# ---- run / lens / attention / dla / generate -----------------------------------------------------
def test_run_matches_python_api(client, tiny_model):
    r = post(client, "/api/run", {"prompt": PROMPT, "top_k": 3})
    assert r.status_code == 200, r.text
    data = r.json()
    direct = tiny_model.run(PROMPT).logits[0]
    assert [t["id"] for t in data["tokens"]] == tiny_model.to_tokens(PROMPT)[0].tolist()
    assert len(data["predictions"]) == len(data["tokens"])
    assert [p["id"] for p in data["predictions"][-1]] == direct[-1].topk(3).indices.tolist()


@pytest.mark.parametrize(
    "iv, make",
    [
        ({"kind": "scale", "k": 0.5}, lambda: tsi.Scale(0.5)),
        ({"kind": "ablate", "mode": "zero", "positions": [1]}, lambda: tsi.Ablate("zero", positions=[1])),
        (
            {"kind": "add", "vector": [0.1] * 64, "scale": 3.0},
            lambda: tsi.Add(torch.full((64,), 0.1), scale=3.0),
        ),
    ],
)
def test_run_with_interventions(client, tiny_model, iv, make):
    site = "blocks.0.resid_post"
    data = post(
        client, "/api/run", {"prompt": PROMPT, "top_k": 1, "interventions": [{"site": site, **iv}]}
    ).json()
    direct = tiny_model.run(PROMPT, interventions={site: make()}).logits[0]
    assert data["n_interventions"] == 1
    for p in range(direct.shape[0]):
        assert data["predictions"][p][0]["id"] == int(direct[p].argmax())
        assert data["predictions"][p][0]["logit"] == pytest.approx(float(direct[p].max()), abs=1e-3)


def test_run_with_patch_and_saved_vector(client, tiny_model):
    ivs = [
        {
            "site": "blocks.1.resid_post",
            "kind": "patch",
            "source_prompt": "the dog is very bad",
            "positions": [1],
        },
        {"site": "blocks.0.resid_post", "kind": "add", "vector_name": "love", "scale": 2.0},
    ]
    r = post(client, "/api/run", {"prompt": PROMPT, "interventions": ivs})
    assert r.status_code == 200, r.text
    assert r.json()["n_interventions"] == 2


def test_lens(client, tiny_model):
    data = post(client, "/api/lens", {"prompt": PROMPT, "target": "good"}).json()
    res = tsi.lens.logit_lens(tiny_model, PROMPT, target="good")
    n_layers, n_pos = res.probs.shape[:2]
    assert len(data["layers"]) == n_layers and len(data["tokens"]) == n_pos
    assert len(data["value"]) == n_layers and len(data["value"][0]) == n_pos
    assert data["value"][-1][-1] == pytest.approx(float(res.prob()[-1, -1]), abs=1e-4)
    assert data["top"][0][0][0]["token"] == res.top_tokens(1)[0][0][0][0]
    # the last layer's lens is the model's own output distribution
    own = tiny_model.run(PROMPT).logits[0, -1].float().softmax(-1)[tiny_model.token_id("good")]
    assert data["value"][-1][-1] == pytest.approx(float(own), abs=1e-4)


def test_attention(client, tiny_model):
    data = post(client, "/api/attention", {"prompt": PROMPT, "layer": 1}).json()
    n = len(data["tokens"])
    assert len(data["patterns"]) == tiny_model.cfg.n_heads
    assert all(len(row) == n for head in data["patterns"] for row in head)
    assert sum(data["patterns"][0][-1]) == pytest.approx(1.0, abs=1e-2)
    assert post(client, "/api/attention", {"prompt": PROMPT, "layer": 99}).status_code == 400


def test_attention_off(tiny_model):
    from starlette.testclient import TestClient

    from torch_shard_interpret.serve import create_app

    c = TestClient(create_app(tiny_model, attention=False))
    assert c.get("/api/info").json()["attention"]["enabled"] is False
    r = c.post("/api/attention", json={"prompt": PROMPT})
    assert r.status_code == 409 and "no-attention" in r.json()["error"]


def test_dla(client, tiny_model):
    data = post(client, "/api/dla", {"prompt": PROMPT, "target": "dog", "baseline": "cat"}).json()
    res = tsi.attribution.direct_logit_attribution(tiny_model, PROMPT, target="dog", baseline="cat")
    assert data["total"] == pytest.approx(res.total, abs=1e-4)
    assert len(data["heads"]) == res.heads.shape[0] and len(data["heads"][0]) == res.heads.shape[1]
    assert sum(data["components"].values()) + data["remainder"] == pytest.approx(data["total"], abs=1e-3)
    assert data["label"] == res.label == "logit('dog') - logit('cat')"
    logits = tiny_model.run(PROMPT).logits[0, -1]  # the total is the model's own logit difference
    dog, cat = tiny_model.token_id("dog"), tiny_model.token_id("cat")
    assert data["total"] == pytest.approx(float(logits[dog] - logits[cat]), abs=1e-4)


def test_generate(client, tiny_model):
    data = post(client, "/api/generate", {"prompt": "the cat", "max_new_tokens": 4}).json()
    assert data["text"] == tiny_model.generate("the cat", max_new_tokens=4)


# ---- steering and vectors ------------------------------------------------------------------------
def test_steer_from_pair_and_saved(client, tiny_model):
    from torch_shard_interpret.steering import SteeringVector

    body = {"prompt": "the cat", "positive": "love", "negative": "hate", "site": "blocks.0.resid_post",
            "scale": 8.0, "max_new_tokens": 5}  # fmt: skip
    data = post(client, "/api/steer", body).json()
    sv = SteeringVector.from_pair(tiny_model, "love", "hate", site="blocks.0.resid_post")
    with sv.apply(tiny_model, scale=8.0):
        expected = tiny_model.generate("the cat", max_new_tokens=5)
    assert data["steered"] == expected
    assert data["unsteered"] == tiny_model.generate("the cat", max_new_tokens=5)
    saved = post(client, "/api/steer", {"prompt": "the cat", "vector_name": "love", "apply_site": "blocks.1.resid_pre",
                                        "max_new_tokens": 3}).json()  # fmt: skip
    assert saved["site"] == "blocks.1.resid_pre"


def test_vectors_create_and_list(client):
    r = post(
        client,
        "/api/vectors",
        {"name": "happy-sad", "positive": "happy", "negative": "sad", "site": "blocks.1.resid_pre"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["d"] == 64
    names = [v["name"] for v in client.get("/api/vectors").json()["vectors"]]
    assert "happy-sad" in names
    bad = post(
        client,
        "/api/vectors",
        {"name": "../x", "positive": "a", "negative": "b", "site": "blocks.0.resid_pre"},
    )
    assert bad.status_code == 400
    r = post(client, "/api/steer", {"prompt": "the cat", "vector_name": "nope"})
    assert r.status_code == 404 and "not a known vector" in r.json()["error"]


# ---- patching and jobs ---------------------------------------------------------------------------
def test_patch_sync_matches_python_api(client, tiny_model):
    body = {
        "clean": "mary gave john a book",
        "corrupt": "john gave mary a book",
        "target": "mary",
        "baseline": "john",
    }
    data = post(client, "/api/patch", body).json()
    m, j = tiny_model.token_id("mary"), tiny_model.token_id("john")
    res = tsi.patching.activation_patching(
        tiny_model,
        body["clean"],
        body["corrupt"],
        lambda lg: lg[:, -1, m] - lg[:, -1, j],
        sites="blocks.*.resid_pre",
    )
    assert data["sites"] == res.sites
    assert torch.allclose(torch.tensor(data["effects"]), res.effects, atol=1e-3)
    assert data["metric"] == "logit('mary') - logit('john')"
    clean_logits = tiny_model.run(body["clean"]).logits[0, -1]
    assert data["clean_metric"] == pytest.approx(float(clean_logits[m] - clean_logits[j]), abs=1e-4)
    # at block 0 the residual stream is the embedding: where both prompts have the same token, patching the
    # clean one in changes nothing
    words = zip(body["clean"].split(), body["corrupt"].split(), strict=True)
    same = [p for p, (a, b) in enumerate(words) if a == b]
    assert len(data["effects"][0]) == len(body["clean"].split())  # one column per word: no BOS
    assert same and all(abs(data["effects"][0][p]) < 1e-6 for p in same)


def test_patch_job_progress(client):
    r = post(
        client,
        "/api/jobs",
        {"kind": "patch", "params": {"clean": "mary gave john", "corrupt": "john gave mary"}},
    )
    assert r.status_code == 202
    state = wait_job(client, r.json()["id"])
    assert state["status"] == "done" and state["progress"] == 1.0
    assert len(state["result"]["effects"]) == 2


def test_job_errors(client):
    r = post(client, "/api/jobs", {"kind": "exec", "params": {}})
    assert r.status_code == 400 and "'kind' must be one of" in r.json()["error"]
    r = post(
        client,
        "/api/jobs",
        {
            "kind": "run",
            "params": {"prompt": "x", "interventions": [{"site": "blocks.7.mlp.out", "kind": "scale"}]},
        },
    )
    state = wait_job(client, r.json()["id"])
    assert state["status"] == "error" and state["error_status"] == 400
    assert state["error"].startswith("unknown site 'blocks.7.mlp.out'")
    assert client.get("/api/jobs/doesnotexist").status_code == 404


# ---- SAE browser ---------------------------------------------------------------------------------
def test_sae_endpoints(client, tiny_model):
    assert client.get("/api/saes").json()["saes"][0]["d_sae"] == 48
    prep = post(client, "/api/jobs", {"kind": "sae_prepare", "params": {"sae": "tiny-sae"}}).json()
    state = wait_job(client, prep["id"])
    assert state["status"] == "done" and state["result"]["alive_latents"] > 0
    latent = state["result"]["most_frequent"][0]["latent"]
    data = client.get(f"/api/saes/tiny-sae/latents/{latent}").json()
    assert data["top_contexts"] and data["top_contexts"][0]["activation"] > 0
    assert sum(data["histogram"]["counts"]) > 0 and len(data["histogram"]["edges"]) == 21
    assert len(data["logit_effects"]["positive"]) == 10
    found = client.get("/api/saes/tiny-sae/search", params={"token": "the"}).json()
    assert found["occurrences"] > 0 and found["firing"] and found["promoting"]
    assert client.get("/api/saes/tiny-sae/latents/4800").status_code == 404
    assert client.get("/api/saes/other/latents/0").status_code == 404
    assert client.get("/api/saes/tiny-sae/search", params={"token": "the cat"}).status_code == 400


def test_served_sae_matches_manual_encode(sae_dir):
    from safetensors.torch import load_file

    from torch_shard_interpret.serve._sae import load_sae, site_from_hook

    w = load_file(str(sae_dir / "sae_weights.safetensors"))
    sae = load_sae(sae_dir, "s")
    assert sae.site == "blocks.1.resid_post"  # from the cfg's TransformerLens hook name
    x = torch.randn(5, 64)
    assert torch.allclose(sae.encode(x), torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]))
    assert site_from_hook("blocks.3.hook_resid_pre") == "blocks.3.resid_pre"
    assert site_from_hook("blocks.3.mlp.out") == "blocks.3.mlp.out"


def test_bad_sae_dir(tmp_path, tiny_model):
    from torch_shard_interpret.serve import create_app

    with pytest.raises(tsi.sae.SAEError, match="SAELens layout"):
        create_app(tiny_model, saes=[tmp_path])


# ---- bad inputs and security ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/static/../../etc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2fetc%2fpasswd",
        "/static/%252e%252e/etc/passwd",
        "/static/js/../../_app.py",
        "/static//etc/passwd",
        "/static/..\\..\\_app.py",
        "/static/%2e%2e%5c_app.py",
    ],
)
def test_path_traversal_rejected(live_server, path):
    import http.client
    from urllib.parse import urlsplit

    # The raw path goes to a real uvicorn server unchanged (an HTTP client library would normalise it).
    host = urlsplit(live_server)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    conn.request("GET", path)
    r = conn.getresponse()
    text = r.read().decode("utf-8", "replace")
    conn.close()
    assert r.status in (400, 404)
    assert "root:" not in text and "create_app" not in text


def test_oversized_body_413(client):
    big = b'{"prompt": "' + b"a" * 1_100_000 + b'"}'
    r = client.post("/api/run", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["error"]


def test_oversized_chunked_body_413(client):
    def chunks():
        for _ in range(20):
            yield b"x" * 100_000

    r = client.post("/api/run", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize(
    "body, ctype, status, needle",
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "must be a JSON object"),
        (b'{"prompt": "x"}', "text/plain", 415, "application/json"),
        (b'{"prompt": ""}', "application/json", 400, "'prompt' is empty"),
        (b'{"prompt": 3}', "application/json", 400, "'prompt' must be a string"),
        (b'{"prompt": "x", "top_k": 1000}', "application/json", 400, "'top_k' must be between"),
        (b'{"prompt": "x", "interventions": {"a": 1}}', "application/json", 400, "must be a list"),
        (
            b'{"prompt": "x", "interventions": [{"site": "blocks.0.resid_post", "kind": "exec", "code": "1"}]}',
            "application/json",
            400,
            "kind must be one of",
        ),  # fmt: skip
        (
            b'{"prompt": "x", "interventions": [{"site": "blocks.0.resid_post", "kind": "add", "vector": [1, 2]}]}',
            "application/json",
            400,
            "",
        ),  # fmt: skip
        (
            b'{"prompt": "x", "interventions": [{"site": "blocks.0.resid_post", "kind": "add", "vector": "__import__"}]}',
            "application/json",
            400,
            "list of numbers",
        ),  # fmt: skip
    ],
)
def test_bad_requests(client, body, ctype, status, needle):
    r = client.post("/api/run", content=body, headers={"content-type": ctype})
    assert r.status_code == status, r.text
    msg = r.json()["error"]
    assert needle in msg and "\n" not in msg and "Traceback" not in msg


def test_unknown_site_gives_core_message(client, tiny_model):
    r = post(
        client,
        "/api/run",
        {"prompt": "x", "interventions": [{"site": "blocks.0.resid_pots", "kind": "scale"}]},
    )
    assert r.status_code == 400
    with pytest.raises(tsi.SiteNotFoundError) as exc:
        tiny_model.resolve("blocks.0.resid_pots")
    assert r.json()["error"] == str(exc.value)


def test_unknown_route_and_method(client):
    assert client.get("/api/nothing").status_code == 404
    assert client.get("/api/run").status_code in (404, 405)
    assert client.get("/nothing").status_code == 404


def test_host_check():
    from starlette.testclient import TestClient

    from torch_shard_interpret.serve import create_app
    from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

    model = tsi.wrap(tiny_hf_model(), tiny_tokenizer())
    c = TestClient(create_app(model, allowed_hosts=["127.0.0.1"]), base_url="http://evil.example")
    assert c.get("/api/info").status_code == 400
    ok = TestClient(create_app(model, allowed_hosts=["127.0.0.1"]), base_url="http://127.0.0.1:8765")
    assert ok.get("/api/info").status_code == 200
