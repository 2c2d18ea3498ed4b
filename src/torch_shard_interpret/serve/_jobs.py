"""Background jobs for long requests: ``POST /api/jobs`` starts one, ``GET /api/jobs/{id}`` polls it."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

MAX_KEPT = 200


@dataclass
class Job:
    id: str
    kind: str
    status: str = "queued"  # queued | running | done | error
    progress: float = 0.0
    message: str = ""
    result: Any = None
    error: str | None = None
    error_status: int | None = None
    created: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "progress": round(self.progress, 4),
            "message": self.message,
        }
        if self.status == "done":
            out["result"] = self.result
        if self.status == "error":
            out["error"] = self.error
            out["error_status"] = self.error_status
        return out


class Jobs:
    """A small thread pool and the last ``MAX_KEPT`` jobs."""

    def __init__(self, workers: int = 2):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tsi-serve-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def submit(self, kind: str, fn: Callable[[Callable[[float, str], None]], Any], on_error: Callable) -> Job:
        job = Job(secrets.token_hex(8), kind)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > MAX_KEPT:
                self._jobs.popitem(last=False)

        def progress(fraction: float, message: str) -> None:
            job.progress = max(0.0, min(1.0, float(fraction)))
            job.message = message

        def work() -> None:
            job.status = "running"
            try:
                job.result = fn(progress)
            except Exception as exc:  # noqa: BLE001 - reported to the poller, one line
                job.error_status, job.error = on_error(exc)
                job.status = "error"
                return
            job.progress = 1.0
            job.message = "done"
            job.status = "done"

        self._pool.submit(work)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
