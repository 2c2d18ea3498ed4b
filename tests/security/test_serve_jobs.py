"""``tsi serve`` stays bounded: job queue (429), cost cap (400), no eviction of live jobs, cancel, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from starlette.testclient import TestClient  # noqa: E402

import torch_shard_interpret as tsi  # noqa: E402
from torch_shard_interpret.serve import _jobs, create_app  # noqa: E402
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer  # noqa: E402

GEN = {"kind": "generate", "params": {"prompt": "the cat", "max_new_tokens": 50}}


@pytest.fixture
def gated():
    """A tiny model whose forwards wait for ``gate`` (set it to let them run)."""
    model = tsi.wrap(tiny_hf_model(), tiny_tokenizer())
    gate = threading.Event()
    handle = model.module.model.layers[0].register_forward_pre_hook(lambda *a: gate.wait(20) and None)
    yield model, gate
    gate.set()
    handle.remove()


def wait_status(c, job_id, statuses, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = c.get(f"/api/jobs/{job_id}").json()
        if state["status"] in statuses:
            return state
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {statuses}: {state}")


def test_delete_cancels_a_running_job(gated):
    model, gate = gated
    with TestClient(create_app(model, attention=False)) as c:
        job = c.post("/api/jobs", json=GEN).json()
        wait_status(c, job["id"], ("running",))
        r = c.delete(f"/api/jobs/{job['id']}")
        assert r.status_code == 200
        gate.set()
        state = wait_status(c, job["id"], ("cancelled", "done", "error"))
        assert state["status"] == "cancelled" and "result" not in state
        assert c.delete("/api/jobs/nope").status_code == 404
        # The server still works after a cancel, with the same answer as the Python API.
        r = c.post("/api/run", json={"prompt": "the cat", "top_k": 1}).json()
        assert r["predictions"][-1][0]["id"] == int(model.run("the cat").logits[0, -1].argmax())


def test_full_queue_is_429_with_retry_after(gated):
    model, gate = gated
    with TestClient(create_app(model, attention=False, job_workers=1, max_jobs=2)) as c:
        first = c.post("/api/jobs", json=GEN)
        second = c.post("/api/jobs", json=GEN)
        assert first.status_code == second.status_code == 202
        third = c.post("/api/jobs", json=GEN)
        assert third.status_code == 429
        assert int(third.headers["retry-after"]) > 0
        assert "queue is full (2 jobs" in third.json()["error"]
        for j in (first, second):
            c.delete(f"/api/jobs/{j.json()['id']}")
        gate.set()
        for j in (first, second):
            assert wait_status(c, j.json()["id"], ("cancelled",))["status"] == "cancelled"
        after = c.post("/api/jobs", json={"kind": "run", "params": {"prompt": "a"}})
        assert after.status_code == 202
        assert wait_status(c, after.json()["id"], ("done",))["status"] == "done"


def test_running_and_queued_jobs_are_never_evicted(monkeypatch):
    monkeypatch.setattr(_jobs, "MAX_KEPT", 3)
    jobs = _jobs.Jobs(workers=2, max_pending=50)
    release = threading.Event()
    slow = jobs.submit("slow", lambda progress, cancel: release.wait(20), lambda e: (500, str(e)))
    fast = []
    for _ in range(10):
        fast.append(jobs.submit("fast", lambda progress, cancel: 1, lambda e: (500, str(e))))
        deadline = time.time() + 10
        while fast[-1].status != "done" and time.time() < deadline:
            time.sleep(0.005)
    assert jobs.get(slow.id) is slow and slow.status == "running"
    assert jobs.get(fast[0].id) is None  # old finished jobs are forgotten ...
    assert jobs.get(fast[-1].id) is fast[-1]  # ... the newest are kept
    release.set()
    jobs.shutdown()


@pytest.mark.parametrize(
    "path, body, needle",
    [
        ("/api/patch", {"clean": "the cat " * 40, "corrupt": "a dog " * 40, "sites": "blocks.*.resid_pre"},
         "sites x 80 positions x 80 tokens"),
        ("/api/generate", {"prompt": "the cat " * 40, "max_new_tokens": 200}, "new tokens"),
        ("/api/steer", {"prompt": "the cat " * 40, "max_new_tokens": 200, "vector": [0.0] * 64,
                        "site": "blocks.0.resid_post"}, "2 generation(s)"),
        ("/api/run", {"prompt": "the cat " * 40}, "1 forward x 80 tokens"),
    ],
)  # fmt: skip
def test_cost_cap_is_400_naming_the_cap(path, body, needle):
    model = tsi.wrap(tiny_hf_model(), tiny_tokenizer())
    with TestClient(create_app(model, attention=False, max_cost=50)) as c:
        r = c.post(path, json=body)
        assert r.status_code == 400, r.text
        msg = r.json()["error"]
        assert "the cap is 50" in msg and needle in msg and "--max-cost" in msg
        kind = path.rsplit("/", 1)[1]
        assert c.post("/api/jobs", json={"kind": kind, "params": body}).status_code == 400


_SERVER = textwrap.dedent(
    """
    import sys, time, uvicorn
    import torch_shard_interpret as tsi
    from torch_shard_interpret.cli.serve import serve_until_interrupted
    from torch_shard_interpret.serve import create_app
    from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

    model = tsi.wrap(tiny_hf_model(), tiny_tokenizer())
    # Every forward takes 0.5 s: a 200-token generation would run for 100 s.
    model.module.model.layers[0].register_forward_pre_hook(lambda *a: time.sleep(0.5))
    app = create_app(model, attention=False, allowed_hosts=["127.0.0.1"])
    port = int(sys.argv[1])
    print("ready", flush=True)
    serve_until_interrupted(app, uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None))
    print("stopped", flush=True)
    """
)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ctrl_c_stops_the_server_while_jobs_run(tmp_path):
    import httpx

    script = tmp_path / "server.py"
    script.write_text(_SERVER)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                httpx.get(f"{url}/api/info", timeout=2)
                break
            except httpx.TransportError:
                assert time.time() < deadline, "the server did not start"
                time.sleep(0.1)
        params = {"prompt": "the cat", "max_new_tokens": 200}
        jobs = [httpx.post(f"{url}/api/jobs", json={"kind": "generate", "params": params}, timeout=5).json()
                for _ in range(3)]  # fmt: skip
        # A synchronous request too: its worker thread must stop as well.
        threading.Thread(target=lambda: _quiet_post(f"{url}/api/generate", params), daemon=True).start()
        deadline = time.time() + 20
        while httpx.get(f"{url}/api/jobs/{jobs[0]['id']}", timeout=5).json()["status"] != "running":
            assert time.time() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        # A 100 s job is running: only cooperative cancel stops it this soon (about 15 s on a loaded machine).
        proc.wait(timeout=30)
        assert proc.returncode == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _quiet_post(url: str, body: dict) -> None:
    import httpx

    try:
        httpx.post(url, json=body, timeout=30)
    except httpx.HTTPError:
        pass
