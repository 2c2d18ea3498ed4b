"""50 concurrent steering requests with different vectors, each answered with exactly its own result."""

from __future__ import annotations

import json
import threading
import urllib.request

import torch

import torch_shard_interpret as tsi

N = 50
SITE = "blocks.0.resid_post"
PROMPT = "the cat"


def _vectors(d: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(d, generator=g) * (1 + i % 5) for i in range(N)]


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def test_50_concurrent_steering_requests_see_only_their_own_vector(live_server, tiny_model):
    vecs = _vectors(tiny_model.cfg.d_model)
    # Sequential reference with the Python API; each vector's vec.tolist() is exactly what the request sends.
    expected = [
        tiny_model.generate(
            PROMPT, max_new_tokens=6, interventions={SITE: tsi.Add(torch.tensor(v.tolist()), scale=3.0)}
        )
        for v in vecs
    ]
    logits = [
        tiny_model.run(PROMPT, interventions={SITE: tsi.Add(torch.tensor(v.tolist()), scale=3.0)}).logits[
            0, -1
        ]
        for v in vecs
    ]
    assert len(set(expected)) > N // 5, (
        "the vectors should steer to different texts for the test to mean much"
    )

    results: list[dict | None] = [None] * N
    errors: list[BaseException] = []
    barrier = threading.Barrier(N)

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            steer = {"prompt": PROMPT, "vector": vecs[i].tolist(), "site": SITE, "scale": 3.0,
                     "max_new_tokens": 6, "unsteered": False}  # fmt: skip
            run = {"prompt": PROMPT, "top_k": 1,
                   "interventions": [{"site": SITE, "kind": "add", "vector": vecs[i].tolist(), "scale": 3.0}]}  # fmt: skip
            results[i] = {
                "steer": _post(f"{live_server}/api/steer", steer),
                "run": _post(f"{live_server}/api/run", run),
            }
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]
    for i, res in enumerate(results):
        assert res is not None
        assert res["steer"]["steered"] == expected[i], f"request {i} got another request's steering"
        top = res["run"]["predictions"][-1][0]
        assert top["id"] == int(logits[i].argmax())
        assert abs(top["logit"] - float(logits[i].max())) < 1e-3
    # And nothing is left behind: a plain run afterwards equals the unsteered model.
    plain = _post(f"{live_server}/api/generate", {"prompt": PROMPT, "max_new_tokens": 6})["text"]
    assert plain == tiny_model.generate(PROMPT, max_new_tokens=6)
