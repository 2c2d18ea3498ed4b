"""Background jobs for long requests: ``POST /api/jobs`` starts one, ``GET /api/jobs/{id}`` polls it,
``DELETE /api/jobs/{id}`` cancels it.

The queue is bounded (``QueueFull`` -> 429), finished jobs are forgotten oldest first beyond ``MAX_KEPT``,
and a queued or running job is never forgotten.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ._cancel import Cancelled

MAX_KEPT = 200
MAX_PENDING = 16
ACTIVE = ("queued", "running")


class QueueFull(Exception):
    """Too many jobs are queued or running; the client should retry after ``retry_after`` seconds."""

    def __init__(self, limit: int, retry_after: int = 5):
        super().__init__(f"the job queue is full ({limit} jobs queued or running); retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class Job:
    id: str
    kind: str
    status: str = "queued"  # queued | running | done | error | cancelled
    progress: float = 0.0
    message: str = ""
    result: Any = None
    error: str | None = None
    error_status: int | None = None
    created: float = field(default_factory=time.time)
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

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
    """A small thread pool, at most ``max_pending`` unfinished jobs, and the last ``MAX_KEPT`` finished ones.

    ``fn(progress, cancel_event)`` does the work; ``shutdown`` (set on server stop) cancels every job.
    """

    def __init__(self, workers: int = 2, max_pending: int = MAX_PENDING):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tsi-serve-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self.max_pending = max_pending
        self.stopping = threading.Event()

    def submit(self, kind: str, fn: Callable[..., Any], on_error: Callable) -> Job:
        job = Job(secrets.token_hex(8), kind)
        with self._lock:
            if self.stopping.is_set():
                raise QueueFull(self.max_pending, retry_after=30)
            if sum(j.status in ACTIVE for j in self._jobs.values()) >= self.max_pending:
                raise QueueFull(self.max_pending)
            self._jobs[job.id] = job
            finished = [k for k, j in self._jobs.items() if j.status not in ACTIVE]
            for k in finished[: max(0, len(self._jobs) - MAX_KEPT)]:
                del self._jobs[k]

        def progress(fraction: float, message: str) -> None:
            if job.cancel.is_set() or self.stopping.is_set():
                raise Cancelled("cancelled")
            job.progress = max(0.0, min(1.0, float(fraction)))
            job.message = message

        def work() -> None:
            if job.cancel.is_set() or self.stopping.is_set():
                job.status, job.message = "cancelled", "cancelled before it started"
                return
            job.status = "running"
            try:
                job.result = fn(progress, job.cancel)
            except Cancelled:
                job.status, job.message = "cancelled", "cancelled"
                return
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

    def cancel(self, job_id: str) -> Job | None:
        """Ask a job to stop (it stops at its next forward); None if there is no such job."""
        job = self.get(job_id)
        if job is not None and job.status in ACTIVE:
            job.cancel.set()
            if job.status == "queued":
                job.status, job.message = "cancelled", "cancelled before it started"
        return job

    def shutdown(self) -> None:
        self.stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
