"""A full disk (ENOSPC) during a harvest: one sentence naming the file, no temp file, no empty output folder,
and the shards finished before it are kept for resume=True, which then gives an uninterrupted run's bytes."""

from __future__ import annotations

import errno
import json

import pytest

from torch_shard_interpret import _io
from torch_shard_interpret.store import StoreError


def _fill_disk_at(monkeypatch, fails):
    """Make the store's file writes hit ENOSPC when ``fails(final_path)`` says so, after half the data went
    into the temp file (as a real full disk does)."""
    real = _io.atomic_write
    hits = []

    def write(final, data, **kw):
        if fails(final):
            hits.append(final)
            with _io.atomic_path(final, mode=kw.get("mode"), prefix=kw.get("prefix")) as tmp:
                tmp.write_bytes(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
        return real(final, data, **kw)

    monkeypatch.setattr(_io, "atomic_write", write)
    return hits


def _no_temps(folder):
    return not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("background", [True, False], ids=["background", "inline"])
@pytest.mark.parametrize("where", ["manifest.json", "shard-00000.safetensors"])
def test_a_full_disk_before_the_first_shard_leaves_no_folder(
    worker, tiny, tmp_path, monkeypatch, background, where
):
    out = tmp_path / "new" / "acts"
    hits = _fill_disk_at(monkeypatch, lambda p: p.name == where)
    with pytest.raises(StoreError) as info:
        worker.harvest_tiny(out, model=tiny, background_writes=background)
    msg = str(info.value)
    assert hits and str(out / where) in msg and "disk is full" in msg and "\n" not in msg, msg
    assert not (tmp_path / "new").exists()  # no folder it created is left, nor the manifest of an empty store


def test_a_full_disk_in_an_existing_empty_folder_leaves_it_empty(worker, tiny, tmp_path, monkeypatch):
    out = tmp_path / "acts"
    out.mkdir()
    _fill_disk_at(monkeypatch, lambda p: p.name.startswith("shard-"))
    with pytest.raises(StoreError, match="disk is full"):
        worker.harvest_tiny(out, model=tiny)
    assert out.is_dir() and not list(out.iterdir())  # the user's folder stays, with nothing of ours in it


@pytest.mark.parametrize("background", [True, False], ids=["background", "inline"])
def test_a_full_disk_mid_harvest_keeps_the_finished_shards_for_resume(
    worker, tiny, tmp_path, monkeypatch, background
):
    out = tmp_path / "acts"
    hits = _fill_disk_at(monkeypatch, lambda p: p.name == "shard-00003.safetensors")
    with pytest.raises(StoreError) as info:
        worker.harvest_tiny(out, model=tiny, background_writes=background)
    msg = str(info.value)
    assert str(out / "shard-00003.safetensors") in msg and "resume=True" in msg and "\n" not in msg, msg
    assert len(hits) == 1 and _no_temps(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and [s["index"] for s in manifest["shards"]] == [0, 1, 2]
    assert not (out / "shard-00003.safetensors").exists()

    monkeypatch.undo()  # space was freed
    resumed = worker.harvest_tiny(out, model=tiny, resume=True)
    resumed.verify()
    reference = worker.harvest_tiny(tmp_path / "ref", model=tiny)
    assert [s["sha256"] for s in resumed.shards] == [s["sha256"] for s in reference.shards]
    for s in resumed.shards:
        assert (out / s["file"]).read_bytes() == (reference.path / s["file"]).read_bytes()


def test_other_write_errors_name_the_file_too(worker, tiny, tmp_path, monkeypatch):
    real = _io.atomic_write

    def denied(final, data, **kw):
        if final.name.startswith("shard-"):
            raise PermissionError(errno.EACCES, "Permission denied", str(final))
        return real(final, data, **kw)

    monkeypatch.setattr(_io, "atomic_write", denied)
    with pytest.raises(StoreError, match=r"cannot write .*shard-00000\.safetensors \(Permission denied\)"):
        worker.harvest_tiny(tmp_path / "acts", model=tiny)
    assert not (tmp_path / "acts").exists()
