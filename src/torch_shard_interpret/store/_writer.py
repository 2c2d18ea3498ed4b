"""Shard writers: run the serialise + hash + fsync + rename of each finished shard, in line or on one thread.

``harvest`` hands every finished shard to a writer (``submit``) and records in the manifest only the
shards the writer gives back as durable, in submission (= shard) order. ``BackgroundWriter`` does the
writing on one daemon thread, so the next shard's forward passes overlap the previous shard's write: the
work there is safetensors serialisation, sha256, ``write`` and ``fsync``, all C code that releases the
GIL for most of its time, and none of it calls torch's intra-op thread pool (the shard's tensors are
contiguous CPU buffers, serialised through raw pointers), so the writer uses one core beside torch's
threads instead of multiplying them. ``InlineWriter`` is the same interface without a thread
(``harvest(..., background_writes=False)``).

Memory is bounded: at most ``max_in_flight`` shards (default 1) are submitted and not yet given back;
``submit`` blocks until the writer has caught up. With one in flight, memory holds the shard being filled,
the shard being written and its serialised bytes: about three shards.

Errors: an exception raised by the job on the thread is kept and raised again, the same object with its
message and traceback, in the calling thread by the next ``poll``/``submit``/``drain``. The job itself
must leave nothing behind when it fails (``atomic_write`` removes its temp file). ``close`` (call it in a
``finally``) asks the thread to stop after the job it is running and waits for it at most ``timeout``
seconds; the thread is a daemon, so even a write stuck in the kernel cannot keep the process alive.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

J = TypeVar("J")
R = TypeVar("R")

_STOP = object()  # the sentinel that ends the thread
_POLL_S = 0.5  # how often a blocked caller checks that the thread is still alive
# The writer thread runs this much nicer than the forward (Linux): torch's threads win a busy CPU.
WRITER_NICE = 5


class WriterDiedError(RuntimeError):
    """The writer thread ended without reporting (should not happen: every job's exception is reported)."""


class InlineWriter(Generic[J, R]):
    """Runs each job at once in the calling thread: ``submit`` returns ``[(job, result)]``."""

    def __init__(self, fn: Callable[[J], R]):
        self._fn = fn

    def submit(self, job: J) -> list[tuple[J, R]]:
        return [(job, self._fn(job))]

    def poll(self) -> list[tuple[J, R]]:
        return []

    def drain(self) -> list[tuple[J, R]]:
        return []

    def close(self, timeout: float | None = None) -> None:
        pass


class BackgroundWriter(Generic[J, R]):
    """Runs jobs on one daemon thread in submission order, at most ``max_in_flight`` submitted and not yet
    given back. ``submit``, ``poll`` and ``drain`` return the finished ``(job, result)`` pairs in order, and
    raise the first job exception."""

    def __init__(self, fn: Callable[[J], R], max_in_flight: int = 1, name: str = "tsi-shard-writer"):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self._fn = fn
        self.max_in_flight = max_in_flight
        self._jobs: queue.Queue[Any] = queue.Queue(maxsize=max_in_flight + 1)  # + the stop sentinel
        self._results: queue.Queue[tuple[Any, Any, BaseException | None]] = queue.Queue()
        self._in_flight = 0
        self._stop = threading.Event()
        self._failed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    # ---- the thread -----------------------------------------------------------------------------
    def _work(self) -> None:
        _be_nicer(WRITER_NICE)
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            if self._stop.is_set():  # closing: drop what was queued behind the running job
                continue
            try:
                result = self._fn(job)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
                self._results.put((job, None, exc))
                self._stop.set()  # nothing after a failed job is written
            else:
                self._results.put((job, result, None))

    # ---- the caller -----------------------------------------------------------------------------
    def submit(self, job: J) -> list[tuple[J, R]]:
        """Hand ``job`` to the thread, first waiting (and returning the finished jobs) until one may."""
        done = self.poll()
        while self._in_flight >= self.max_in_flight:
            done.append(self._take(block=True))
        self._jobs.put(job)
        self._in_flight += 1
        return done

    def poll(self) -> list[tuple[J, R]]:
        """The jobs finished so far (without waiting)."""
        done = []
        while self._in_flight:
            item = self._take(block=False)
            if item is None:
                break
            done.append(item)
        return done

    def drain(self) -> list[tuple[J, R]]:
        """Wait for every submitted job; return them."""
        done = []
        while self._in_flight:
            done.append(self._take(block=True))
        return done

    def _take(self, block: bool) -> Any:
        while True:
            try:
                job, result, exc = self._results.get(block=block, timeout=_POLL_S if block else None)
            except queue.Empty:
                if not block:
                    return None
                if not self._thread.is_alive() and self._results.empty():
                    self._in_flight = 0
                    raise WriterDiedError("the shard writer thread ended without reporting") from None
                continue
            self._in_flight -= 1
            if exc is not None:
                self._failed = True
                self._in_flight = 0
                raise exc
            return job, result

    def close(self, timeout: float | None = 60.0) -> None:
        """Stop the thread after its running job (queued jobs are dropped); wait at most ``timeout`` s."""
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._jobs.put(_STOP, timeout=timeout)
        self._thread.join(timeout)


def _be_nicer(step: int) -> None:
    """Raise the calling thread's nice value by ``step`` (Linux: per thread; elsewhere: do nothing)."""
    if not sys.platform.startswith("linux") or not hasattr(os, "setpriority"):
        return
    with contextlib.suppress(OSError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + step)
