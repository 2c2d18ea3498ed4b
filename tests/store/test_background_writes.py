"""Shards written on the background writer thread: the same bytes as in-line writes, a writer error surfaces
in ``harvest`` as itself and leaves no temp file, an interrupt stops the writer, and resume=True finishes
either into the bytes of an uninterrupted run."""

from __future__ import annotations

import json
import threading
import time

import pytest

import torch_shard_interpret as tsi
from torch_shard_interpret import _io
from torch_shard_interpret.store import _harvest
from torch_shard_interpret.store._writer import BackgroundWriter


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "tsi-shard-writer"]


def _same_folder(a, b):
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_background_writes_give_the_bytes_of_inline_writes(worker, tiny, tmp_path):
    background = worker.harvest_tiny(tmp_path / "bg", model=tiny)
    inline = worker.harvest_tiny(tmp_path / "inline", model=tiny, background_writes=False)
    assert len(background.shards) == len(inline.shards) > 3
    _same_folder(background.path, inline.path)  # every shard and the manifest
    assert not _writer_threads()


def test_writer_error_surfaces_as_itself_leaves_no_temp_then_resume_matches(
    worker, tiny, tmp_path, monkeypatch
):
    original = _harvest.atomic_write
    calls: list[str] = []
    raised: list[BaseException] = []

    def failing_write(path, data, tag=""):
        if path.name.startswith("shard-"):
            calls.append(threading.current_thread().name)
            if len(calls) == 2:  # the 2nd shard: half of it reaches the temp file, then the disk is full
                with _io.atomic_path(path, mode=None, prefix=f".{path.name}.{tag}") as tmp:
                    tmp.write_bytes(data[: len(data) // 2])
                    assert list(path.parent.glob(".*.tmp"))
                    raised.append(OSError(28, "No space left on device (test)"))
                    raise raised[-1]
        original(path, data, tag)

    monkeypatch.setattr(_harvest, "atomic_write", failing_write)
    out = tmp_path / "s"
    with pytest.raises(OSError, match=r"No space left on device \(test\)") as info:
        worker.harvest_tiny(out, model=tiny)
    assert info.value is raised[0]  # the writer's own exception, not a wrapper
    assert calls[:2] == ["tsi-shard-writer"] * 2  # it was raised on the writer thread
    assert not _writer_threads()  # the writer was stopped
    assert not list(out.glob(".*.tmp"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and [s["file"] for s in manifest["shards"]] == ["shard-00000.safetensors"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-00000.safetensors"]
    kept = (out / "shard-00000.safetensors").stat().st_mtime_ns

    monkeypatch.setattr(_harvest, "atomic_write", original)
    resumed = worker.harvest_tiny(out, resume=True, model=tiny)
    reference = worker.harvest_tiny(tmp_path / "ref", model=tiny)
    assert len(resumed.shards) == len(reference.shards) > 2
    assert (out / "shard-00000.safetensors").stat().st_mtime_ns == kept  # not rewritten
    _same_folder(out, reference.path)


def test_keyboard_interrupt_stops_the_writer_then_resume_matches(worker, tiny, tmp_path, monkeypatch):
    original_run = tsi.Model.run
    n = [0]

    def interrupted_run(self, *a, **k):
        n[0] += 1
        if n[0] == 8:  # a few shards in (the first call is the shape probe)
            raise KeyboardInterrupt
        return original_run(self, *a, **k)

    monkeypatch.setattr(tsi.Model, "run", interrupted_run)
    out = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        worker.harvest_tiny(out, model=tiny)
    assert not _writer_threads()
    assert not list(out.glob(".*.tmp"))
    with pytest.raises(tsi.store.StoreIncompleteError):
        tsi.store.open(out)
    tsi.store.open(out, allow_incomplete=True).verify()  # what is listed is whole

    monkeypatch.setattr(tsi.Model, "run", original_run)
    worker.harvest_tiny(out, resume=True, model=tiny)
    _same_folder(out, worker.harvest_tiny(tmp_path / "ref", model=tiny).path)


def test_background_writer_keeps_at_most_one_job_in_flight_and_gives_jobs_back_in_order():
    release = threading.Event()
    started: list[int] = []

    def job(i: int) -> int:
        started.append(i)
        release.wait(10)
        return i * 10

    writer = BackgroundWriter(job, max_in_flight=1)
    try:
        assert writer.submit(1) == []
        second: list = []
        t = threading.Thread(target=lambda: second.append(writer.submit(2)))
        t.start()
        time.sleep(0.2)
        assert second == [] and started == [1]  # the 2nd hand-off waits for the 1st write
        release.set()
        t.join(10)
        assert second == [[(1, 10)]]
        assert writer.drain() == [(2, 20)]
    finally:
        release.set()
        writer.close(timeout=10)
    assert not writer._thread.is_alive()
