"""Harvest into a store and read it back, on a tiny random LLaMA (no download)."""

from __future__ import annotations

import json

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.store import (
    StoreCorruptError,
    StoreError,
    StoreIncompleteError,
    StoreMismatchError,
)

SITES = ["blocks.0.resid_post", "blocks.1.mlp.out"]


def _harvest(model, data, path, **kw):
    kw = {"context": 16, "batch_size": 3, "shard_rows": 4, "progress": False, **kw}
    return tsi.store.harvest(model, data, sites=SITES, path=path, **kw)


def test_packing_and_values_match_a_direct_run(tiny, worker, tmp_path):
    texts = worker.texts()
    store = _harvest(tiny, texts, tmp_path / "s")
    tok = tiny.tokenizer
    stream = []
    for t in texts:
        stream += tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    n_seq = len(stream) // 16
    m = store.manifest
    assert m["complete"] and m["n_sequences"] == n_seq and len(store) == n_seq * 16 == m["n_tokens"]
    assert m["dropped_tail_tokens"] == len(stream) - n_seq * 16 and m["dropped_tail_tokens"] < 16
    assert store.sites == SITES and store.shape("blocks.0.resid_post") == (64,)
    assert torch.equal(store.tokens(), torch.tensor(stream[: n_seq * 16]))
    # rows [20, 100) cross shard boundaries (64 rows per shard) and are equal to a plain cached run
    ids = store.tokens().view(n_seq, 16)
    run = tiny.run(ids, cache=SITES)
    for site in SITES:
        want = run.cache[site].reshape(-1, 64)
        assert torch.allclose(store.read(site, 20, 100), want[20:100], atol=1e-5)
        assert store.read(site).shape == (len(store), 64)
    assert store.read(SITES[0], 5, 5).shape == (0, 64)
    with pytest.raises(StoreError, match="outside"):
        store.read(SITES[0], 0, len(store) + 1)
    with pytest.raises(tsi.SiteNotFoundError, match="blocks.0.resid_post"):
        store.read("blocks.0.resid_pre", 0, 1)


def test_manifest_lists_every_shard_with_checksum(tiny, worker, tmp_path):
    store = _harvest(tiny, worker.texts(), tmp_path / "s")
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert m["format"] == "tsi-activation-store" and m["format_version"] == 1
    assert m["dtype"] == "float32" and m["context"] == 16 and m["shard_rows"] == 4
    assert m["source"]["kind"] == "texts" and m["source"]["n_documents"] == 60
    assert m["model"]["class"].endswith("LlamaForCausalLM") and m["model"]["d_model"] == 64
    files = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert files == ["manifest.json", *(s["file"] for s in m["shards"])]  # no temp or progress files
    assert [s["index"] for s in m["shards"]] == list(range(len(m["shards"])))
    assert m["shards"][-1]["row_stop"] == len(store)
    assert all(len(s["sha256"]) == 64 for s in m["shards"])


def test_batches_shuffle_every_row_once_and_are_seeded(tiny, worker, tmp_path):
    store = _harvest(tiny, worker.texts(), tmp_path / "s")
    full = store.read(SITES[1])

    def epoch(**kw):
        return list(store.batches(SITES[1], batch_size=24, buffer_size=80, **kw))

    a, b, c = epoch(seed=0), epoch(seed=0), epoch(seed=1)
    assert all(len(x) == 24 for x in a[:-1]) and sum(len(x) for x in a) == len(store)
    got = torch.cat(a)
    # every row exactly once: sorting rows by their values gives back the store's rows
    key = lambda t: t[:, 0].argsort()  # noqa: E731 - random activations: first feature is unique
    assert torch.equal(got[key(got)], full[key(full)])
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(torch.cat(a), torch.cat(c)) and not torch.equal(got, full)
    plain = list(store.batches(SITES[1], batch_size=100, shuffle=False, drop_last=True))
    assert torch.equal(torch.cat(plain), full[: len(plain) * 100])


def test_token_tensors_bf16_and_globs(tiny, tmp_path):
    ids = torch.randint(4, 100, (10, 8))
    store = tsi.store.harvest(tiny, ids, sites="blocks.*.resid_post", path=tmp_path / "s", dtype=torch.bfloat16,
                              batch_size=4, shard_rows=4, progress=False)  # fmt: skip
    assert store.sites == ["blocks.0.resid_post", "blocks.1.resid_post"] and store.context == 8
    assert len(store) == 80 and store.read("blocks.1.resid_post", 0, 80).dtype == torch.bfloat16
    assert torch.equal(store.tokens(), ids.flatten())
    want = tiny.run(ids, cache="blocks.1.resid_post").cache["blocks.1.resid_post"].reshape(-1, 64)
    assert torch.equal(store.read("blocks.1.resid_post"), want.bfloat16())
    # an iterable of batches with the same rows gives the same store
    again = tsi.store.harvest(tiny, iter([ids[:3], ids[3:]]), sites="blocks.*.resid_post", path=tmp_path / "t",
                              dtype=torch.bfloat16, batch_size=4, shard_rows=4, progress=False)  # fmt: skip
    assert torch.equal(again.read("blocks.0.resid_post"), store.read("blocks.0.resid_post"))
    with pytest.raises(tsi.InputError, match="context=8"):
        tsi.store.harvest(tiny, ids, sites=SITES, path=tmp_path / "u", context=16, progress=False)


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "parquet"])
def test_files_give_the_same_rows_as_the_texts(tiny, worker, tmp_path, fmt):
    texts = worker.texts()[:20]
    path = tmp_path / f"data.{fmt}"
    if fmt == "txt":
        path.write_text("\n".join(texts) + "\n\n")  # blank lines are not documents
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    else:
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": texts}), path)
    store = _harvest(tiny, str(path), tmp_path / "s")
    ref = _harvest(tiny, texts, tmp_path / "ref")
    assert torch.equal(store.tokens(), ref.tokens())
    assert store.manifest["source"]["kind"] == "file" and store.manifest["source"]["format"] == fmt


def test_corrupted_shard_is_named_by_its_checksum(tiny, worker, tmp_path):
    _harvest(tiny, worker.texts(), tmp_path / "s")
    shard = tmp_path / "s" / "shard-00001.safetensors"
    good = shard.read_bytes()
    data = bytearray(good)
    data[-7] ^= 0x40  # flip one bit inside the tensor data
    shard.write_bytes(bytes(data))
    store = tsi.store.open(tmp_path / "s")  # lazily verified: shard 0 still reads
    store.read(SITES[0], 0, 10)
    with pytest.raises(StoreCorruptError, match="shard-00001.safetensors"):
        store.read(SITES[0], 60, 70)
    with pytest.raises(StoreCorruptError, match="shard-00001.safetensors"):
        tsi.store.open(tmp_path / "s", verify="all")
    assert isinstance(StoreCorruptError("x"), tsi.TsiError)
    tsi.store.open(tmp_path / "s", verify=False).read(
        SITES[0], 60, 70
    )  # opting out reads the bytes as they are
    # resume rewrites the bad shard; the store is whole again
    store = _harvest(tiny, worker.texts(), tmp_path / "s", resume=True)
    assert shard.read_bytes() == good
    store.verify()
    shard.write_bytes(shard.read_bytes()[:-10])  # truncation is caught by the size on open
    with pytest.raises(StoreCorruptError, match="shard-00001.safetensors"):
        tsi.store.open(tmp_path / "s")


def test_resume_reuses_shards_and_checks_settings(tiny, worker, tmp_path):
    path = tmp_path / "s"
    _harvest(tiny, worker.texts(), path)
    m = json.loads((path / "manifest.json").read_text())
    # pretend the harvest stopped after 3 shards: drop the rest from the manifest and one file
    m["shards"], m["complete"] = m["shards"][:3], False
    (path / "manifest.json").write_text(json.dumps(m))
    (path / "shard-00005.safetensors").unlink()
    with pytest.raises(StoreIncompleteError, match="resume=True"):
        tsi.store.open(path)
    assert len(tsi.store.open(path, allow_incomplete=True)) == 3 * 4 * 16
    before = {p.name: p.stat().st_mtime_ns for p in path.glob("shard-*")}
    with pytest.raises(StoreError, match="already holds an unfinished"):
        _harvest(tiny, worker.texts(), path)
    with pytest.raises(StoreMismatchError, match="dtype"):
        _harvest(tiny, worker.texts(), path, resume=True, dtype=torch.float16)
    store = _harvest(tiny, worker.texts(), path, resume=True)
    after = {p.name: p.stat().st_mtime_ns for p in path.glob("shard-*")}
    assert all(after[f"shard-0000{k}.safetensors"] == before[f"shard-0000{k}.safetensors"] for k in range(3))
    ref = _harvest(tiny, worker.texts(), tmp_path / "ref")
    for a, b in zip(store.shards, ref.shards, strict=True):
        assert a["sha256"] == b["sha256"]
    # a finished store: resume returns at once; overwrite replaces it
    assert len(_harvest(tiny, worker.texts(), path, resume=True)) == len(ref)
    assert len(_harvest(tiny, worker.texts()[:10], path, overwrite=True)) < len(ref)


def test_bad_inputs_fail_before_writing_anything(tiny, tmp_path):
    out = tmp_path / "s"
    with pytest.raises(tsi.SiteNotFoundError, match="blocks.1.resid_post"):
        tsi.store.harvest(tiny, ["the cat"], sites="blocks.1.resid_pots", path=out, progress=False)
    with pytest.raises(tsi.InputError, match="no complete row"):
        _harvest(tiny, ["the cat"], out)
    with pytest.raises(tsi.InputError, match="empty"):
        _harvest(tiny, [], out)
    with pytest.raises(tsi.InputError, match="does not exist"):
        _harvest(tiny, str(tmp_path / "missing.txt"), out)
    with pytest.raises(tsi.TsiError, match="pattern"):  # not per-token (and needs eager attention)
        tsi.store.harvest(tiny, ["the cat"] * 50, sites="blocks.0.attn.pattern", path=out, context=8,
                          progress=False)  # fmt: skip
    assert not out.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        _harvest(tiny, ["the cat"] * 50, tmp_path / "file")
