"""An activation store trusts nothing it reads: every damaged or edited manifest or shard is refused on open
with one sentence naming the file, never read silently and never a raw SafetensorError, KeyError or JSON
error. Each case damages a copy of one small harvested store."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save

import torch_shard_interpret as tsi
from torch_shard_interpret.store import StoreCorruptError, StoreError, StoreIncompleteError
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer
from torch_shard_interpret.testing._models import WORDS

SITES = ["blocks.0.resid_post", "blocks.1.mlp.out"]
CONTEXT, SHARD_ROWS = 8, 2  # 16 rows per shard


def _texts(seed: int, n: int = 24) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [
        " ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (12,), generator=g)) for _ in range(n)
    ]


def _harvest(model, texts, path):
    return tsi.store.harvest(model, texts, sites=SITES, path=path, context=CONTEXT, batch_size=2,
                             shard_rows=SHARD_ROWS, progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A store and a foreign one (same model and settings, other texts) with as many rows per shard."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = tsi.wrap(tiny_hf_model("llama", seed=0), tiny_tokenizer())
        root = tmp_path_factory.mktemp("stores")
        base = _harvest(model, _texts(0), root / "base")
        foreign = _harvest(model, _texts(1), root / "foreign")
    finally:
        torch.set_num_threads(n)
    assert len(base.shards) >= 6 and len(foreign.shards) >= 6
    assert base.manifest["store_id"] != foreign.manifest["store_id"]
    return root / "base", root / "foreign"


# ---- damage -------------------------------------------------------------------------------------
def _manifest(path: Path, fn: Callable[[dict], object]) -> None:
    m = json.loads((path / "manifest.json").read_text())
    fn(m)
    (path / "manifest.json").write_text(json.dumps(m))


def _shard(path: Path, k: int) -> Path:
    return path / f"shard-{k:05d}.safetensors"


def _replace_shard(path: Path, k: int, blob: bytes) -> None:
    """Write ``blob`` as shard ``k`` and record its size and sha256 in the manifest, as an attacker (or a
    careless merge) would: the checksums alone then cannot tell."""
    _shard(path, k).write_bytes(blob)

    def fix(m):
        entry = next(e for e in m["shards"] if e["index"] == k)
        entry["bytes"], entry["sha256"] = len(blob), hashlib.sha256(blob).hexdigest()

    _manifest(path, fix)


def _resave(path: Path, k: int, change: Callable[[dict, dict], None]) -> None:
    """Re-serialise shard ``k`` after ``change(tensors, metadata)`` and record it in the manifest."""
    file = _shard(path, k)
    tensors = load_file(str(file))
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as f:
        meta = dict(f.metadata() or {})
    change(tensors, meta)
    _replace_shard(path, k, save(tensors, metadata=meta or None))


def _shift(m, k, seqs):
    e = m["shards"][k]
    e["seq_start"] += seqs
    e["seq_stop"] += seqs
    e["row_start"] += seqs * CONTEXT
    e["row_stop"] += seqs * CONTEXT


def _write(name: str, data: bytes):
    return lambda p, f: (p / name).write_bytes(data)


def _header_len(p: Path, k: int, n: int) -> None:
    blob = bytearray(_shard(p, k).read_bytes())
    blob[:8] = struct.pack("<Q", n)
    _replace_shard(p, k, bytes(blob))


def _garbage_header(p: Path, k: int) -> None:
    blob = bytearray(_shard(p, k).read_bytes())
    blob[8:40] = b"x" * 32
    _replace_shard(p, k, bytes(blob))


def _drop_meta_key(key):
    def change(tensors, meta):
        info = json.loads(meta["tsi"])
        del info[key]
        meta["tsi"] = json.dumps(info)

    return change


M = "manifest.json"
# (id, damage(path, foreign_path), fragment the message must hold, open kwargs)
CASES = [
    # the two that went wrong silently (len() 560, reads 528 rows, verify="all" passed)
    ("dropped_entry", lambda p, f: _manifest(p, lambda m: m["shards"].pop(3)), "shard-00003", {}),
    (
        "shifted_rows",
        lambda p, f: _manifest(
            p,
            lambda m: m["shards"][3].update(
                row_start=m["shards"][3]["row_start"] + CONTEXT, row_stop=m["shards"][3]["row_stop"] + CONTEXT
            ),
        ),
        "shard-00003",
        {},
    ),  # fmt: skip
    ("shifted_sequences_and_rows", lambda p, f: _manifest(p, lambda m: _shift(m, 3, 1)), "shard-00003", {}),
    ("shifted_into_overlap", lambda p, f: _manifest(p, lambda m: _shift(m, 3, -1)), "shard-00003", {}),
    (
        "shifted_without_shard_rows",
        lambda p, f: _manifest(p, lambda m: (m.pop("shard_rows"), _shift(m, 3, 1))),
        "shard-00003",
        {},
    ),  # fmt: skip
    (
        "shifted_in_unfinished_store",
        lambda p, f: _manifest(p, lambda m: (m.update(complete=False), m.pop("shard_rows"), _shift(m, 2, 1))),
        "shard-00002",
        {"allow_incomplete": True},
    ),  # fmt: skip
    (
        "duplicate_entry",
        lambda p, f: _manifest(p, lambda m: m["shards"].insert(3, copy.deepcopy(m["shards"][3]))),
        "shard-00003",
        {},
    ),  # fmt: skip
    (
        "short_last_shard_in_the_middle",
        lambda p, f: _manifest(
            p,
            lambda m: m["shards"][1].update(
                seq_stop=m["shards"][1]["seq_stop"] - 1, row_stop=m["shards"][1]["row_stop"] - CONTEXT
            ),
        ),
        "shard-00001",
        {},
    ),  # fmt: skip
    ("n_rows_too_large", lambda p, f: _manifest(p, lambda m: m.update(n_rows=m["n_rows"] + CONTEXT)), M, {}),
    ("n_rows_missing", lambda p, f: _manifest(p, lambda m: m.pop("n_rows")), M, {}),
    ("n_sequences_wrong", lambda p, f: _manifest(p, lambda m: m.update(n_sequences=1)), M, {}),
    (
        "file_outside_the_folder",
        lambda p, f: _manifest(p, lambda m: m["shards"][0].update(file="../x.safetensors")),
        "../x.safetensors",
        {},
    ),  # fmt: skip
    (
        "absolute_file",
        lambda p, f: _manifest(p, lambda m: m["shards"][0].update(file="/etc/passwd")),
        "/etc/passwd",
        {},
    ),  # fmt: skip
    ("sha256_missing", lambda p, f: _manifest(p, lambda m: m["shards"][2].pop("sha256")), "shard-00002", {}),
    ("bytes_missing", lambda p, f: _manifest(p, lambda m: m["shards"][2].pop("bytes")), "'bytes'", {}),
    (
        "index_is_a_string",
        lambda p, f: _manifest(p, lambda m: m["shards"][2].update(index="2")),
        "'index'",
        {},
    ),
    ("entry_is_a_string", lambda p, f: _manifest(p, lambda m: m["shards"].__setitem__(2, "x")), M, {}),
    ("shards_missing", lambda p, f: _manifest(p, lambda m: m.pop("shards")), M, {}),
    ("shards_is_an_object", lambda p, f: _manifest(p, lambda m: m.update(shards={})), M, {}),
    ("sites_missing", lambda p, f: _manifest(p, lambda m: m.pop("sites")), M, {}),
    ("sites_is_a_list", lambda p, f: _manifest(p, lambda m: m.update(sites=SITES)), M, {}),
    ("site_without_shape", lambda p, f: _manifest(p, lambda m: m["sites"][SITES[0]].pop("shape")), M, {}),
    ("dtype_unknown", lambda p, f: _manifest(p, lambda m: m.update(dtype="load")), M, {}),
    ("context_is_a_string", lambda p, f: _manifest(p, lambda m: m.update(context="8")), M, {}),
    ("complete_missing", lambda p, f: _manifest(p, lambda m: m.pop("complete")), M, {}),
    ("format_version_is_a_string", lambda p, f: _manifest(p, lambda m: m.update(format_version="1")), M, {}),
    ("manifest_is_a_list", _write(M, b"[1, 2]"), M, {}),
    ("manifest_is_a_number", _write(M, b"3"), M, {}),
    ("manifest_truncated", lambda p, f: (p / M).write_bytes((p / M).read_bytes()[:200]), M, {}),
    ("manifest_binary", _write(M, b"\xff\xfe\x00\x01" * 50), M, {}),
    ("manifest_empty", _write(M, b""), M, {}),
    ("manifest_missing", lambda p, f: (p / M).unlink(), M, {}),
    # shards: the manifest's size and sha256 agree with the file, its header does not agree with the store
    ("foreign_shard", lambda p, f: _replace_shard(p, 3, _shard(f, 3).read_bytes()), "another store", {}),
    ("shard_from_another_index", lambda p, f: _replace_shard(p, 3, _shard(p, 4).read_bytes()), "index", {}),
    (
        "store_id_edited",
        lambda p, f: _manifest(p, lambda m: m.update(store_id="0" * 32)),
        "another store",
        {},
    ),
    ("store_id_removed", lambda p, f: _manifest(p, lambda m: m.pop("store_id")), "another store", {}),
    ("shard_without_store_id", lambda p, f: _resave(p, 2, _drop_meta_key("store_id")), "another store", {}),
    ("shard_without_metadata", lambda p, f: _resave(p, 2, lambda t, m: m.clear()), "metadata", {}),
    (
        "shard_seq_start_edited",
        lambda p, f: _resave(
            p, 2, lambda t, m: m.update(tsi=json.dumps({**json.loads(m["tsi"]), "seq_start": 0}))
        ),
        "seq_start",
        {},
    ),  # fmt: skip
    (
        "shard_wrong_dtype",
        lambda p, f: _resave(p, 2, lambda t, m: t.update({SITES[0]: t[SITES[0]].half()})),
        "F16",
        {},
    ),  # fmt: skip
    (
        "shard_extra_tensor",
        lambda p, f: _resave(p, 2, lambda t, m: t.update(extra=torch.zeros(3))),
        "extra",
        {},
    ),
    ("shard_missing_tensor", lambda p, f: _resave(p, 2, lambda t, m: t.pop(SITES[1])), "missing", {}),
    (
        "shard_fewer_rows",
        lambda p, f: _resave(p, 2, lambda t, m: t.update({k: v[:-1] for k, v in t.items()})),
        "shard-00002",
        {},
    ),  # fmt: skip
    (
        "site_shape_edited",
        lambda p, f: _manifest(p, lambda m: m["sites"][SITES[0]].update(shape=[32])),
        "shard-00000",
        {},
    ),  # fmt: skip
    ("shard_truncated", lambda p, f: _shard(p, 2).write_bytes(_shard(p, 2).read_bytes()[:-10]), "bytes", {}),
    (
        "shard_truncated_and_recorded",
        lambda p, f: _replace_shard(p, 2, _shard(p, 2).read_bytes()[:-10]),
        "data offsets",
        {},
    ),  # fmt: skip
    (
        "shard_appended_and_recorded",
        lambda p, f: _replace_shard(p, 2, _shard(p, 2).read_bytes() + b"\0" * 8),
        "after its tensors",
        {},
    ),  # fmt: skip
    ("shard_header_garbage", lambda p, f: _garbage_header(p, 2), "not valid JSON", {}),
    ("shard_header_length_huge", lambda p, f: _header_len(p, 2, 2**62), "header length", {}),
    ("shard_header_length_zero", lambda p, f: _header_len(p, 2, 0), "shard-00002", {}),
    ("shard_three_bytes", lambda p, f: _replace_shard(p, 2, b"abc"), "too short", {}),
    (
        "shard_header_a_list",
        lambda p, f: _replace_shard(p, 2, struct.pack("<Q", 2) + b"[]"),
        "JSON object",
        {},
    ),
    ("shard_missing", lambda p, f: _shard(p, 2).unlink(), "missing", {}),
]


@pytest.mark.parametrize("damage, fragment, kwargs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("verify", [True, "all", False])
def test_a_damaged_store_is_refused_in_one_sentence(stores, tmp_path, damage, fragment, kwargs, verify):
    base, foreign = stores
    path = tmp_path / "s"
    shutil.copytree(base, path)
    tsi.store.open(path, verify="all")  # the copy itself is whole
    damage(path, foreign)
    with pytest.raises(StoreError) as info:
        tsi.store.open(path, verify=verify, **kwargs)
    msg = str(info.value)
    assert fragment in msg, msg
    assert "\n" not in msg and str(path) in msg, msg  # one sentence, naming the file in this store
    assert isinstance(info.value, tsi.TsiError) and not isinstance(info.value, StoreIncompleteError)


def test_the_silent_cases_of_the_old_reader_now_fail_on_open_and_verify(stores, tmp_path):
    """A dropped shard entry made ``len()`` count every row while reads skipped a shard's rows."""
    base, _ = stores
    whole = tsi.store.open(base)
    path = tmp_path / "s"
    shutil.copytree(base, path)
    _manifest(path, lambda m: m["shards"].pop(3))
    with pytest.raises(StoreCorruptError, match=r"no entry for shard-00003\.safetensors"):
        tsi.store.open(path, verify="all")
    assert len(whole) == whole.manifest["n_rows"] == len(whole.read(SITES[0])) == len(whole.tokens())


def test_a_shard_changed_after_open_is_named_not_a_raw_safetensors_error(stores, tmp_path):
    base, _ = stores
    path = tmp_path / "s"
    shutil.copytree(base, path)
    unchecked = tsi.store.open(path, verify=False)
    checked = tsi.store.open(path)
    size = _shard(path, 1).stat().st_size
    _shard(path, 1).write_bytes(b"\xff" * size)  # same size: only reading it can tell
    with pytest.raises(StoreCorruptError, match=r"shard-00001\.safetensors cannot be read as safetensors"):
        unchecked.read(SITES[0], 16, 20)
    with pytest.raises(StoreCorruptError, match=r"shard-00001\.safetensors does not match the sha256"):
        checked.read(SITES[0], 16, 20)
    _shard(path, 2).unlink()
    with pytest.raises(StoreCorruptError, match=r"shard-00002\.safetensors cannot be read"):
        unchecked.read(SITES[1], 32, 36)
    with pytest.raises(StoreCorruptError, match=r"shard-0000[12]\.safetensors cannot be read"):
        list(unchecked.batches(SITES[0], batch_size=8, seed=0))
    assert torch.equal(unchecked.read(SITES[0], 0, 16), tsi.store.open(base).read(SITES[0], 0, 16))


def test_a_damaged_progress_file_is_ignored_by_resume(stores, tmp_path):
    """Progress files are read by resume only: a list, garbage or bad entries there never crash it."""
    base, _ = stores
    path = tmp_path / "s"
    shutil.copytree(base, path)
    _manifest(path, lambda m: (m.update(complete=False), m.__setitem__("shards", m["shards"][:3])))
    (path / "progress.rank0.json").write_text("[1, 2]")
    (path / "progress.rank1.json").write_text('{"shards": [{"index": "x"}, 7, {"index": 0}]}')
    (path / "progress.rank2.json").write_bytes(b"\xff\x00")
    model = tsi.wrap(tiny_hf_model("llama", seed=0), tiny_tokenizer())
    store = tsi.store.harvest(model, _texts(0), sites=SITES, path=path, context=CONTEXT, batch_size=2,
                              shard_rows=SHARD_ROWS, progress=False, resume=True)  # fmt: skip
    store.verify()
    assert not list(path.glob("progress.*"))
    assert [s["sha256"] for s in store.shards] == [s["sha256"] for s in tsi.store.open(base).shards]
