"""Reading a store: ``tsi.store.open(path)``, memory-mapped slices and shuffled batches."""

from __future__ import annotations

import bisect
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ._check import check_header, check_manifest
from ._errors import StoreCorruptError, StoreError, StoreIncompleteError
from ._manifest import TOKENS, read_manifest

_HASH_CHUNK = 1 << 22


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Store:
    """An activation store on disk: rows are tokens; every site is a ``[len(store), *shape]`` array.

    Open one with ``tsi.store.open(path)`` (``tsi.store.harvest`` returns one too). Reads go through
    ``safetensors.safe_open`` (memory-mapped; only the bytes asked for are read). Only the shards listed
    in the manifest are used, and each is checked against its recorded sha256 (``verify``).
    """

    def __init__(self, path: str | os.PathLike, verify: bool | str = True, allow_incomplete: bool = False):
        if verify not in (True, False, "all"):
            raise StoreError(f"verify must be True (lazily, per shard), 'all' (now) or False, not {verify!r}")
        self.path = Path(path)
        if not self.path.is_dir():
            raise StoreError(f"no activation store at {str(self.path)!r}: the folder does not exist")
        self.manifest: dict[str, Any] = read_manifest(self.path)
        """The parsed ``manifest.json`` (see docs/store.md for its fields)."""
        listed = self.manifest.get("shards")
        if self.manifest.get("complete") is False and not allow_incomplete:
            raise StoreIncompleteError(
                f"the harvest into {str(self.path)!r} has not finished "
                f"({len(listed) if isinstance(listed, list) else 0} shards so far); rerun "
                "tsi.store.harvest(..., resume=True) to finish it, or open(..., allow_incomplete=True)"
            )
        # Structure: types, contiguous row ranges from 0 adding up to n_rows (an unfinished store: only the
        # run of finished shards from shard 0 counts).
        shards = check_manifest(self.path, self.manifest)
        self.shards: list[dict[str, Any]] = shards
        self._starts = [s["row_start"] for s in shards]
        self._n = shards[-1]["row_stop"] if shards else 0
        self._verify = verify
        self._verified: set[int] = set()
        self._handles: dict[int, Any] = {}
        for s in shards:  # cheap checks now: every listed file is there with its size and header
            file = self.path / s["file"]
            try:
                size = file.stat().st_size
            except FileNotFoundError:
                raise StoreCorruptError(f"shard file {file} listed in the manifest is missing") from None
            if size != s["bytes"]:
                raise StoreCorruptError(
                    f"shard file {file} has {size} bytes but the manifest recorded {s['bytes']} (truncated or "
                    "overwritten); re-harvest it with tsi.store.harvest(..., resume=True) after deleting it"
                )
            check_header(self.path, self.manifest, s)
        if verify == "all":
            self.verify()

    # ---- description ----------------------------------------------------------------------------
    @property
    def sites(self) -> list[str]:
        """The sites held, in harvest order."""
        return list(self.manifest["sites"])

    @property
    def context(self) -> int:
        return int(self.manifest["context"])

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.manifest["dtype"])  # one of STORE_DTYPES (checked on open)

    def shape(self, site: str) -> tuple[int, ...]:
        """Per-row shape of ``site`` (``(d_model,)`` for the residual stream)."""
        return tuple(self._site(site)["shape"])

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"tsi.store.Store({str(self.path)!r}, rows={len(self)}, sites={self.sites}, dtype={self.manifest['dtype']})"

    # ---- checks ---------------------------------------------------------------------------------
    def verify(self) -> None:
        """Check the sha256 of every shard now; raises ``StoreCorruptError`` naming the first bad file."""
        for i in range(len(self.shards)):
            self._check(i)

    def _check(self, i: int) -> None:
        if i in self._verified:
            return
        s = self.shards[i]
        file = self.path / s["file"]
        try:
            digest = sha256_file(file)
        except OSError as exc:
            raise _unreadable(file, exc) from None
        if digest != s["sha256"]:
            raise StoreCorruptError(
                f"shard file {file} does not match the sha256 in the manifest (corrupted on disk); delete it "
                "and rerun tsi.store.harvest(..., resume=True) to rewrite it"
            )
        self._verified.add(i)

    def _handle(self, i: int) -> Any:
        h = self._handles.get(i)
        if h is None:
            if self._verify:
                self._check(i)
            from safetensors import safe_open

            file = self.path / self.shards[i]["file"]
            try:
                h = safe_open(str(file), framework="pt")
            except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError: the file changed since open
                raise _unreadable(file, exc) from None
            self._handles[i] = h
        return h

    def _rows(self, i: int, name: str, a: int, b: int) -> torch.Tensor:
        """Rows ``[a, b)`` (within shard ``i``) of tensor ``name``."""
        h = self._handle(i)
        try:
            return h.get_slice(name)[a:b]
        except Exception as exc:  # noqa: BLE001 - SafetensorError and friends from a damaged file
            raise _unreadable(self.path / self.shards[i]["file"], exc) from None

    def _site(self, site: str) -> dict[str, Any]:
        info = self.manifest["sites"].get(site)
        if info is None:
            from ..core import SiteNotFoundError

            raise SiteNotFoundError(site, self.sites, hint=f"the store at {self.path} holds {self.sites}")
        return info

    # ---- reads ----------------------------------------------------------------------------------
    def _range(self, start: int | None, stop: int | None) -> tuple[int, int]:
        n = len(self)
        start = 0 if start is None else (start + n if start < 0 else start)
        stop = n if stop is None else (stop + n if stop < 0 else stop)
        if not 0 <= start <= stop <= n:
            raise StoreError(f"rows [{start}, {stop}) are outside the store's {n} rows")
        return start, stop

    def _gather(self, name: str, start: int, stop: int) -> list[torch.Tensor]:
        parts = []
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        while start < stop:
            s = self.shards[i]
            a, b = start - s["row_start"], min(stop, s["row_stop"]) - s["row_start"]
            parts.append(self._rows(i, name, a, b))
            start = s["row_start"] + b
            i += 1
        return parts

    def read(self, site: str, start: int | None = None, stop: int | None = None) -> torch.Tensor:
        """Rows ``[start, stop)`` of ``site`` as a tensor ``[stop - start, *shape]`` in the stored dtype."""
        info = self._site(site)
        start, stop = self._range(start, stop)
        parts = self._gather(site, start, stop)
        if not parts:
            return torch.empty((0, *info["shape"]), dtype=self.dtype)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def tokens(self, start: int | None = None, stop: int | None = None) -> torch.Tensor:
        """The token ids (int64) of rows ``[start, stop)``: row ``r`` is token ``r % context`` of packed
        sequence ``r // context``."""
        start, stop = self._range(start, stop)
        parts = self._gather(TOKENS, start, stop)
        return torch.cat(parts).long() if parts else torch.empty(0, dtype=torch.int64)

    def batches(
        self,
        site: str,
        batch_size: int = 4096,
        shuffle: bool = True,
        seed: int = 0,
        buffer_size: int | None = None,
        drop_last: bool = False,
    ) -> Iterator[torch.Tensor]:
        """One epoch over ``site`` in batches ``[batch_size, *shape]``: every row exactly once.

        ``shuffle=True``: shards are visited in a seeded random order and loaded into a buffer of at least
        ``buffer_size`` rows (default ``16 * batch_size``, and at least one shard); the buffer is permuted,
        all but about half of it is served, and the rest stays to mix with the next shard. The same seed
        gives the same batches; use ``seed=epoch`` for a new order each epoch. ``shuffle=False`` serves
        rows in store order. The last batch is smaller unless ``drop_last``.
        """
        self._site(site)
        if batch_size < 1:
            raise StoreError(f"batch_size must be at least 1, not {batch_size}")
        if not shuffle:
            for a in range(0, len(self), batch_size):
                b = min(a + batch_size, len(self))
                if b - a == batch_size or not drop_last:
                    yield self.read(site, a, b)
            return
        gen = torch.Generator().manual_seed(seed)
        keep = max(buffer_size if buffer_size is not None else 16 * batch_size, batch_size)
        order = torch.randperm(len(self.shards), generator=gen).tolist()
        pending: torch.Tensor | None = None
        for i in order:
            s = self.shards[i]
            rows = self._rows(i, site, 0, s["row_stop"] - s["row_start"])
            pending = rows if pending is None else torch.cat([pending, rows])
            if len(pending) >= keep:
                pending = pending[torch.randperm(len(pending), generator=gen)]
                n_out = (len(pending) - keep // 2) // batch_size * batch_size
                for a in range(0, n_out, batch_size):
                    yield pending[a : a + batch_size]
                pending = pending[n_out:]
        if pending is not None and len(pending):
            pending = pending[torch.randperm(len(pending), generator=gen)]
            for a in range(0, len(pending), batch_size):
                batch = pending[a : a + batch_size]
                if len(batch) == batch_size or not drop_last:
                    yield batch

    def close(self) -> None:
        """Release the open shard files (they are also released when the store is garbage-collected)."""
        self._handles.clear()


def _unreadable(file: Path, exc: BaseException) -> StoreCorruptError:
    detail = " ".join(str(exc).split())[:200]
    return StoreCorruptError(
        f"shard file {file} cannot be read as safetensors ({type(exc).__name__}: {detail}); delete it and "
        "rerun tsi.store.harvest(..., resume=True) to rewrite it"
    )


def open(path: str | os.PathLike, verify: bool | str = True, allow_incomplete: bool = False) -> Store:  # noqa: A001
    """Open a store written by ``tsi.store.harvest``.

    ``verify=True`` checks each shard's sha256 the first time it is read (``"all"``: every shard now;
    ``False``: never). Always checked on open, cheaply: the manifest's structure (row ranges contiguous
    from 0 and adding up to ``n_rows``) and each listed shard's size and safetensors header (store id,
    index, sites, shapes, dtypes); a damaged store raises ``StoreCorruptError`` naming the file. A
    harvest that has not finished raises
    ``StoreIncompleteError`` unless ``allow_incomplete=True`` (then only the finished leading shards count).
    """
    return Store(path, verify=verify, allow_incomplete=allow_incomplete)
