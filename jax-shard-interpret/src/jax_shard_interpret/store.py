"""Harvest activations into the store format of ``tsi.store`` (``tsi.store.open`` reads it) and read stores.

``harvest(model, data, sites, path, context=128)``: texts are tokenized without special tokens and packed
with the EOS token after each document into rows of ``context`` tokens (the ragged tail is dropped), as
in ``tsi``; a token array ``[n, context]`` is used row by row. Shards are written atomically with their
sha256; the manifest is rewritten after each shard and marked complete at the end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import _storefmt as fmt
from ._errors import InputError, JsiError, SiteNotFoundError
from ._model import wrap
from ._run import run
from ._sites import select


class StoreError(JsiError):
    """A store is missing, incomplete or damaged."""


def _rows(model: Any, data: Any, context: int) -> tuple[np.ndarray, dict[str, Any]]:
    if isinstance(data, np.ndarray) or hasattr(data, "shape"):
        ids = np.asarray(data, dtype=np.int64)
        if ids.ndim != 2 or ids.shape[1] != context:
            raise InputError(f"token data must be [n, context={context}], not {list(ids.shape)}")
        return ids, {"kind": "tokens", "shape": list(ids.shape), "sha256": fmt.sha256_bytes(ids.tobytes())}
    texts = [data] if isinstance(data, str) else list(data)
    eos = getattr(model, "eos_token_id", None)
    if model.tokenizer is None or eos is None:
        raise InputError(
            "harvesting texts needs a tokenizer and an EOS token id; pass token rows [n, context]"
        )
    stream: list[int] = []
    for t in texts:
        stream += model.tokenizer.encode(t, add_special_tokens=False).ids + [int(eos)]
    n = len(stream) // context
    if n == 0:
        raise InputError(f"the texts give {len(stream)} tokens, fewer than one row of context={context}")
    desc = {"kind": "texts", "n_documents": len(texts), "packing": "eos_after_each_document", "eos_token_id": int(eos),
            "context": context}  # fmt: skip
    return np.asarray(stream[: n * context], np.int64).reshape(n, context), desc


def harvest(
    model: Any, data: Any, sites: Any, path: str | os.PathLike, context: int = 128, batch_size: int = 8,
    shard_rows: int = 64, dtype: str = "float32",
) -> Store:  # fmt: skip
    """Run ``model`` over ``data`` and write ``sites`` (names or globs) to a store at ``path``."""
    model = wrap(model)
    if dtype not in fmt.DTYPES:
        raise InputError(f"dtype must be one of {fmt.DTYPES}, not {dtype!r}")
    names = select(sites, model.sites())
    folder = Path(path)
    if not folder.parent.is_dir():
        raise InputError(
            f"cannot write a store to {str(folder)!r}: the folder {str(folder.parent)!r} does not exist"
        )
    folder.mkdir(exist_ok=True)
    ids, source = _rows(model, data, context)
    settings: dict[str, Any] = {
        "model": {"name": getattr(model.module.config, "name", "") if hasattr(model.module, "config") else "",
                  "class": f"{type(model.module).__module__}.{type(model.module).__qualname__}",
                  "d_model": model.cfg.d_model},
        "tokenizer": "tokenizers.Tokenizer" if model.tokenizer is not None else None,
        "sites": {}, "dtype": dtype, "context": context, "batch_size": batch_size, "shard_rows": shard_rows,
        "source": source,
    }  # fmt: skip
    writer = "jax-shard-interpret 0.1.0"
    # written into the manifest and every shard; tsi.store.open refuses a shard with another store's id
    store_id = fmt.sha256_bytes(json.dumps({**settings, "sites": names}, sort_keys=True).encode())[:32]
    shards: list[dict[str, Any]] = []
    from safetensors.numpy import save

    for index, s0 in enumerate(range(0, len(ids), shard_rows)):
        part = ids[s0 : s0 + shard_rows]
        acts: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for b0 in range(0, len(part), batch_size):
            _, cache = run(model, part[b0 : b0 + batch_size].astype(np.int32), cache=names)
            for n in names:
                v = np.asarray(cache[n], dtype=np.float32)
                acts[n].append(v.reshape(-1, *v.shape[2:]))
        tensors = {n: np.ascontiguousarray(np.concatenate(v).astype(dtype)) for n, v in acts.items()}
        settings["sites"] = {n: {"shape": list(t.shape[1:])} for n, t in tensors.items()}
        tensors[fmt.TOKENS] = part.reshape(-1).astype(np.int32)
        info = {
            "format": fmt.FORMAT,
            "index": index,
            "seq_start": s0,
            "context": context,
            "store_id": store_id,
        }
        blob = save(tensors, metadata={"tsi": json.dumps(info, sort_keys=True)})
        file = folder / fmt.shard_name(index)
        fmt.atomic_write(file, blob)
        shards.append(fmt.shard_entry(index, file.name, s0, s0 + len(part), context, blob))
        fmt.write_json(
            folder / fmt.MANIFEST, fmt.manifest(settings, shards, False, writer, store_id=store_id)
        )
    extra = {"n_sequences": len(ids), "n_rows": len(ids) * context, "n_tokens": len(ids) * context,
             "dropped_tail_tokens": 0}  # fmt: skip
    fmt.write_json(
        folder / fmt.MANIFEST, fmt.manifest(settings, shards, True, writer, store_id=store_id, **extra)
    )
    return Store(folder)


class Store:
    """A store on disk (written by ``jsi.store.harvest`` or ``tsi.store.harvest``); reads return numpy arrays."""

    def __init__(self, path: str | os.PathLike, verify: bool = True):
        self.path = Path(path)
        try:
            self.manifest = json.loads((self.path / fmt.MANIFEST).read_text())
        except FileNotFoundError:
            raise StoreError(f"no activation store at {str(self.path)!r}: manifest.json is missing") from None
        if self.manifest.get("format") != fmt.FORMAT:
            raise StoreError(f"{self.path / fmt.MANIFEST} is not an activation store manifest")
        if int(self.manifest.get("format_version", 0)) > fmt.FORMAT_VERSION:
            raise StoreError(f"{self.path} uses a newer store format; upgrade jax-shard-interpret")
        if not self.manifest.get("complete"):
            raise StoreError(f"the harvest into {str(self.path)!r} has not finished")
        self.shards = sorted(self.manifest["shards"], key=lambda s: s["index"])
        self._verify, self._ok = verify, set()

    @property
    def sites(self) -> list[str]:
        return list(self.manifest["sites"])

    @property
    def context(self) -> int:
        return int(self.manifest["context"])

    def __len__(self) -> int:
        return self.shards[-1]["row_stop"] if self.shards else 0

    def _load(self, i: int, name: str) -> np.ndarray:
        from safetensors.numpy import load_file

        s = self.shards[i]
        file = self.path / s["file"]
        if self._verify and i not in self._ok:
            if not file.is_file() or fmt.sha256_file(file) != s["sha256"]:
                raise StoreError(f"shard file {file} is missing or does not match the sha256 in the manifest")
            self._ok.add(i)
        return load_file(str(file))[name]

    def read(self, site: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        if site not in self.manifest["sites"] and site != fmt.TOKENS:
            raise SiteNotFoundError(site, self.sites, hint=f"the store at {self.path} holds {self.sites}")
        stop = len(self) if stop is None else stop
        parts = []
        for i, s in enumerate(self.shards):
            a, b = max(start, s["row_start"]), min(stop, s["row_stop"])
            if a < b:
                parts.append(self._load(i, site)[a - s["row_start"] : b - s["row_start"]])
        return np.concatenate(parts) if parts else np.zeros((0,))

    def tokens(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.read(fmt.TOKENS, start, stop).astype(np.int64)


def open(path: str | os.PathLike, verify: bool = True) -> Store:  # noqa: A001
    return Store(path, verify)
