"""The SAE browser on a real activation store: a store harvested from the tiny model, an SAE trained on it and
saved in SAELens layout, and an app started with both. The browser's corpus must be the store's tokens."""

from __future__ import annotations

import json
import random
import time

import pytest
import torch

import torch_shard_interpret as tsi

SITE = "blocks.1.resid_post"
CONTEXT = 16
SENTENCES = [
    "mary gave a book to john in the city",
    "the cat was in the house and the dog was happy",
    "one two three four five six seven eight nine ten",
    "where is the tower ? it is in paris , not rome",
    "i love the red car but they hate the blue car",
    "she went to the store when he was sad",
]


@pytest.fixture(scope="module")
def served(tiny_model, tmp_path_factory):
    rng = random.Random(0)
    texts = [" ".join(rng.sample(SENTENCES, 3)) for _ in range(40)]
    root = tmp_path_factory.mktemp("store-sae")
    store = tsi.store.harvest(
        tiny_model, texts, sites=[SITE], path=root / "acts", context=CONTEXT, batch_size=8, progress=False
    )
    sae = tsi.sae.train(
        store,
        {"kind": "topk", "d_sae": 32, "k": 4},
        {"steps": 60, "batch_size": 128},
        site=SITE,
        progress=False,
    )
    sae.save(root / "store-sae")
    assert (root / "store-sae" / "cfg.json").is_file()
    assert (root / "store-sae" / "sae_weights.safetensors").is_file()

    from starlette.testclient import TestClient

    from torch_shard_interpret.serve import create_app

    app = create_app(
        tiny_model, stores=[root / "acts"], saes=[root / "store-sae"], model_name="tiny", attention=False
    )
    with TestClient(app) as client:
        yield client, tsi.store.open(root / "acts"), tsi.sae.load(root / "store-sae")


def test_info_lists_the_store_and_the_sae(served):
    client, store, _ = served
    info = client.get("/api/info").json()
    assert info["stores"] == ["acts"]
    [entry] = info["saes"]
    assert entry["name"] == "store-sae" and entry["site"] == SITE
    assert entry["d_in"] == 64 and entry["d_sae"] == 32


def test_latent_contexts_come_from_the_store(served, tiny_model):
    client, store, sae = served
    prep = client.post("/api/jobs", json={"kind": "sae_prepare", "params": {"sae": "store-sae"}}).json()
    for _ in range(600):
        job = client.get(f"/api/jobs/{prep['id']}").json()
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert job["status"] == "done", job
    result = job["result"]
    assert result["n_tokens"] == len(store) and "store 'acts'" in result["corpus"]
    assert result["alive_latents"] > 0

    # The store's own rows, decoded, and the latents the SAE gives on the stored activations.
    ids = store.tokens(0, len(store))
    words = [tiny_model.tokenizer.decode([int(i)]) for i in ids]
    with torch.no_grad():
        acts = sae.encode(store.read(SITE, 0, len(store)).float())  # [rows, d_sae]
    latent = int(result["most_frequent"][0]["latent"])
    data = client.get(f"/api/saes/store-sae/latents/{latent}").json()
    assert data["corpus"] == result["corpus"] and data["n_tokens"] == len(store)
    assert data["frequency"] == pytest.approx(float((acts[:, latent] > 0).float().mean()), abs=0.02)
    assert data["max_activation"] == pytest.approx(float(acts[:, latent].max()), rel=1e-2, abs=1e-3)
    joined = "\x00".join(words)
    assert data["top_contexts"]
    for ctx in data["top_contexts"]:
        # every context is a contiguous run of the store's tokens, within one packed row
        assert "\x00".join(ctx["tokens"]) in joined
        assert len(ctx["tokens"]) <= CONTEXT
        assert ctx["acts"][ctx["max_index"]] == pytest.approx(ctx["activation"], abs=1e-3)
    # the top context is where the stored activations peak
    assert data["top_contexts"][0]["activation"] == pytest.approx(float(acts[:, latent].max()), rel=1e-2)

    found = client.get("/api/saes/store-sae/search", params={"token": "paris"}).json()
    paris = tiny_model.token_id("paris")
    assert found["token_id"] == paris and found["occurrences"] == int((ids == paris).sum()) > 0
    assert found["firing"] and len(found["promoting"]) == 10


def test_an_opened_store_is_named_by_its_folder(served, tiny_model):
    from torch_shard_interpret.serve import create_app

    _, store, _ = served
    app = create_app(tiny_model, stores=[store], model_name="tiny", attention=False)
    assert sorted(app.state.tsi.stores) == ["acts"]
    assert app.state.tsi.corpus_name == f"store 'acts' ({len(store)} tokens)"


def test_browser_reads_saelens_v5_topk(served, tmp_path):
    """The browser reads through tsi.sae.load; v5 TopK is 'standard' + activation_fn_str 'topk'."""
    from torch_shard_interpret.serve._sae import load_sae

    _, store, sae = served
    sae.save(tmp_path / "v5")
    cfg = {"d_in": 64, "d_sae": 32, "architecture": "standard", "activation_fn_str": "topk",
           "activation_fn_kwargs": {"k": 4}, "hook_name": "blocks.1.hook_resid_post"}  # fmt: skip
    (tmp_path / "v5" / "cfg.json").write_text(json.dumps(cfg))
    served_sae = load_sae(tmp_path / "v5", "v5")
    assert served_sae.site == SITE
    x = store.read(SITE, 0, 32).float()
    with torch.no_grad():
        torch.testing.assert_close(served_sae.encode(x), sae.encode(x), atol=1e-5, rtol=1e-5)
