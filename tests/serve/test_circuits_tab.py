"""The Circuits tab: ``POST /api/circuits`` (and its job) equal the ``tsi.circuits`` API called directly."""

from __future__ import annotations

import time

import pytest

import torch_shard_interpret as tsi

CLEAN, CORRUPT = "the cat is very good", "the dog is very good"
BODY = {"clean": CLEAN, "corrupt": CORRUPT, "target": " good", "baseline": " bad", "top": 10}


def direct(model, method="eap-ig", steps=5, n=10):
    right, wrong = model.token_id(" good"), model.token_id(" bad")

    def metric(logits):
        return logits[:, -1, right] - logits[:, -1, wrong]

    scored = tsi.circuits.attribute(model, CLEAN, CORRUPT, metric, method=method, steps=steps, progress=False)
    circuit = scored.circuit if isinstance(scored, tsi.circuits.AcdcResult) else scored.top(n=n)
    f = tsi.circuits.faithfulness(model, circuit, CLEAN, CORRUPT, metric)
    curve = tsi.circuits.faithfulness_curve(model, scored, CLEAN, CORRUPT, metric)
    return scored, circuit, f, curve


def test_circuit_svg_and_faithfulness_match_the_api(client, tiny_model):
    r = client.post("/api/circuits", json=BODY)
    assert r.status_code == 200, r.text
    out = r.json()
    scored, circuit, f, curve = direct(tiny_model)
    assert out["faithfulness"] == pytest.approx(float(f), abs=1e-5)
    assert out["faithfulness_detail"]["m_full"] == pytest.approx(f.full_metric, abs=1e-5)
    assert out["faithfulness_detail"]["ablation"] == "patch"
    assert out["circuit_edges"] == circuit.edges and out["nodes"] == circuit.nodes
    assert out["edges"] == len(circuit) and out["total_edges"] == len(scored.graph.edges)
    assert out["method"] == "eap-ig-inputs" and out["metric"] == "logit(' good') - logit(' bad')"
    assert out["svg"].startswith("<svg") and out["svg"].endswith("</svg>")
    for node in circuit.nodes:
        assert f">{node}<" in out["svg"]
    assert out["svg"].count("<line") == len(circuit)
    assert out["curve"]["cpr"] == pytest.approx(curve.cpr, abs=1e-5)
    assert out["curve"]["values"] == pytest.approx(curve.values, abs=1e-5)
    assert out["curve"]["chart"].startswith("<svg")
    top_edge, top_score = out["top_edges"][0]
    assert top_score == pytest.approx(scored.scores[top_edge], abs=1e-5)
    assert out["circuit"] is None  # the MIB JSON of every edge only on request


def test_circuits_job_acdc_and_mib_json(client, tiny_model):
    body = {**BODY, "method": "acdc", "curve": False, "mib": True}
    r = client.post("/api/jobs", json={"kind": "circuits", "params": body})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.time() + 120
    while (job := client.get(f"/api/jobs/{job_id}").json())["status"] in ("queued", "running"):
        assert time.time() < deadline
        time.sleep(0.05)
    assert job["status"] == "done", job
    out = job["result"]
    _, circuit, f, _ = direct(tiny_model, method="acdc")
    assert out["faithfulness"] == pytest.approx(float(f), abs=1e-5)
    assert out["circuit_edges"] == circuit.edges and out["curve"] is None
    mib = out["circuit"]
    assert [e for e, v in mib["edges"].items() if v["in_graph"]] == circuit.edges


@pytest.mark.parametrize(
    "change, words",
    [
        ({"corrupt": "the dog is good"}, ["tokens but its corrupt prompt is"]),
        ({"method": "magic"}, ["'method' must be one of eap-ig, eap, patching, acdc"]),
        ({"top": 0}, ["'top' must be a fraction"]),
        ({"target": " good good"}, ["not one"]),
        ({"clean": ""}, ["'clean' is empty"]),
        ({"steps": 500}, ["'steps' must be between 1 and 50"]),
    ],
)
def test_bad_requests_get_one_sentence_400(client, change, words):
    r = client.post("/api/circuits", json={**BODY, **change})
    assert r.status_code == 400, r.text
    msg = r.json()["error"]
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_cost_cap(client, app, monkeypatch):
    monkeypatch.setattr(app.state.tsi, "max_cost", 50)
    r = client.post("/api/circuits", json=BODY)
    assert r.status_code == 400 and "the cap is 50" in r.json()["error"]
    r = client.post("/api/jobs", json={"kind": "circuits", "params": BODY})
    assert r.status_code == 400 and "forwards x 5 tokens" in r.json()["error"]
