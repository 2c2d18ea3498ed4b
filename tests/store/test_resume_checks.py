"""resume=True checks every finished shard (size, header, sha256) and rewrites the bad ones into the bytes of an
uninterrupted run; the manifest names the model by a stable name; stores written before store ids and
``model.path`` still open and resume."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

import torch_shard_interpret as tsi
from torch_shard_interpret.store import StoreMismatchError
from torch_shard_interpret.store._settings import model_identity, same_model


def _shard(path, k):
    return path / f"shard-{k:05d}.safetensors"


def _flip(file) -> None:
    data = bytearray(file.read_bytes())
    data[-5] ^= 0x10  # one bit inside the tensor data: same size, same header
    file.write_bytes(bytes(data))


def _edit(path, fn) -> None:
    m = json.loads((path / "manifest.json").read_text())
    fn(m)
    (path / "manifest.json").write_text(json.dumps(m))


def _unfinish(path, n_listed: int) -> None:
    """Make the store look stopped after ``n_listed`` shards (the rest stay on disk, unlisted)."""
    _edit(path, lambda m: m.update(complete=False, shards=m["shards"][:n_listed]))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, worker):
    """An uninterrupted harvest: the bytes every resume must give back."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store = worker.harvest_tiny(tmp_path_factory.mktemp("ref") / "ref")
    finally:
        torch.set_num_threads(n)
    return store.path


def _copy(reference, tmp_path):
    path = tmp_path / "s"
    shutil.copytree(reference, path)
    return path


def _same_bytes(path, reference) -> None:
    names = sorted(p.name for p in reference.iterdir())
    assert sorted(p.name for p in path.iterdir()) == names
    for name in names:
        if name.startswith("shard-"):
            assert (path / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.parametrize("finished", [True, False], ids=["finished-store", "unfinished-store"])
def test_resume_rewrites_a_listed_shard_with_its_size_intact(worker, tiny, reference, tmp_path, finished):
    """A flipped bit keeps the size: only the sha256 tells (the mutant "keep a listed shard on its size
    alone" leaves the bad bytes and fails here)."""
    path = _copy(reference, tmp_path)
    if not finished:
        _unfinish(path, 4)
    _flip(_shard(path, 1))
    kept = {k: _shard(path, k).stat().st_mtime_ns for k in (0, 2, 3)}
    store = worker.harvest_tiny(path, resume=True, model=tiny)
    _same_bytes(path, reference)
    store.verify()
    assert all(_shard(path, k).stat().st_mtime_ns == t for k, t in kept.items())  # good shards not rewritten
    assert store.manifest["complete"] and len(store) == len(tsi.store.open(reference))


def test_resume_rewrites_a_foreign_shard_whose_sha256_was_recorded(worker, tiny, reference, tmp_path):
    other = tsi.store.harvest(tiny, worker.texts()[::-1], sites=worker.SITES, path=tmp_path / "other",
                              context=worker.CONTEXT, batch_size=worker.BATCH, shard_rows=worker.SHARD_ROWS,
                              progress=False)  # fmt: skip
    path = _copy(reference, tmp_path)
    blob = _shard(other.path, 2).read_bytes()
    assert blob != _shard(path, 2).read_bytes() and len(blob) == _shard(path, 2).stat().st_size
    _shard(path, 2).write_bytes(blob)

    def record(m):
        m["shards"][2]["sha256"] = hashlib.sha256(blob).hexdigest()

    _edit(path, record)
    _unfinish(path, 5)
    worker.harvest_tiny(path, resume=True, model=tiny).verify()
    _same_bytes(path, reference)


def test_resume_repairs_a_finished_store_whose_manifest_lost_an_entry(worker, tiny, reference, tmp_path):
    path = _copy(reference, tmp_path)
    _edit(path, lambda m: m["shards"].pop(3))
    with pytest.raises(tsi.store.StoreCorruptError, match="shard-00003"):
        tsi.store.open(path)
    worker.harvest_tiny(path, resume=True, model=tiny).verify()
    _same_bytes(path, reference)
    assert json.loads((path / "manifest.json").read_text()) == json.loads(
        (reference / "manifest.json").read_text()
    )


# ---- the model's name, and stores written before store ids ------------------------------------------
def _fake_embedded(tmp_path, model):
    """Point the tiny model's config at a folder laid out like the embedded model's cache."""
    folder = tmp_path / "cache" / "models" / "smollm2-135m"
    folder.mkdir(parents=True)
    (folder / "tsi-complete.json").write_text("{}")
    model.module.config._name_or_path = str(folder)
    return folder


def _make_legacy(path, folder) -> None:
    """Rewrite a store as torch-shard-interpret wrote it before store ids and model.path."""
    m = json.loads((path / "manifest.json").read_text())
    del m["store_id"]
    m["model"] = {"name": str(folder), "class": m["model"]["class"], "d_model": m["model"]["d_model"]}
    for e in m["shards"]:
        file = path / e["file"]
        with safe_open(str(file), framework="pt") as f:
            info = json.loads(f.metadata()["tsi"])
        del info["store_id"]
        blob = save(load_file(str(file)), metadata={"tsi": json.dumps(info, sort_keys=True)})
        file.write_bytes(blob)
        e["bytes"], e["sha256"] = len(blob), hashlib.sha256(blob).hexdigest()
    (path / "manifest.json").write_text(json.dumps(m))


def test_manifest_names_the_model_stably_and_old_stores_open_and_resume(worker, tmp_path):
    model = worker.tiny_model()
    folder = _fake_embedded(tmp_path, model)
    store = worker.harvest_tiny(tmp_path / "s", model=model)
    assert store.manifest["model"]["name"] == "smollm2-135m"  # not the cache folder (docs/store.md)
    assert store.manifest["model"]["path"] == str(folder.resolve())
    reads = {site: store.read(site) for site in worker.SITES}

    _make_legacy(store.path, folder)
    old = tsi.store.open(store.path, verify="all")  # an old store opens as before
    assert "store_id" not in old.manifest and torch.equal(old.read(worker.SITES[0]), reads[worker.SITES[0]])
    _unfinish(store.path, 3)
    _flip(_shard(store.path, 1))
    resumed = worker.harvest_tiny(store.path, resume=True, model=model)
    resumed.verify()
    assert "store_id" not in resumed.manifest and resumed.manifest["model"]["name"] == "smollm2-135m"
    for e in resumed.shards:  # continued in the old format: no shard has a store id
        with safe_open(str(store.path / e["file"]), framework="pt") as f:
            assert "store_id" not in json.loads(f.metadata()["tsi"])
    assert all(torch.equal(resumed.read(site), reads[site]) for site in worker.SITES)

    # another model's store: resume refuses, naming the model
    _edit(store.path, lambda m: m.update(complete=False, model={**m["model"], "name": "gpt2", "path": None}))
    with pytest.raises(StoreMismatchError, match=r"model: .*'gpt2'"):
        worker.harvest_tiny(store.path, resume=True, model=model)


def test_model_identity_is_the_name_it_was_loaded_by(tiny, tmp_path):
    tiny.module.config._name_or_path = "org/some-model"  # a Hub id: no folder here
    ident = model_identity(tiny)
    assert ident["name"] == "org/some-model" and "path" not in ident and ident["d_model"] == 64
    local = tmp_path / "my-model"
    local.mkdir()
    tiny.module.config._name_or_path = str(local)
    assert model_identity(tiny)["name"] == str(local) and "path" not in model_identity(tiny)
    new = {"name": "smollm2-135m", "path": str(local), "class": ident["class"], "d_model": 64}
    assert same_model(
        {"name": str(local), "class": ident["class"], "d_model": 64}, new
    )  # written before path
    assert not same_model({"name": str(tmp_path), "class": ident["class"], "d_model": 64}, new)
    assert not same_model({"name": "smollm2-135m", "class": ident["class"], "d_model": 32}, new)
    assert same_model({**new, "path": "/elsewhere/smollm2-135m"}, new)  # another cache folder: same model
