"""``tsi.store.harvest``: run the model over packed rows and write every requested site to a sharded store.

One forward per batch records all sites (``model.run(..., return_logits=False)`` stops after the last
one). Packed sequences are grouped into shards of ``shard_rows`` sequences; shard ``k`` always holds
sequences ``[k * shard_rows, (k + 1) * shard_rows)`` and is computed in batches that never cross a
shard boundary, so a shard's bytes do not depend on which run (or rank) wrote it. That is what lets
``resume=True`` skip finished shards and lets ranks of a data-parallel harvest split the shards
(``k % world_size == rank``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import _io
from ..core import InputError
from . import _resume
from ._buffer import ShardBuffer, harvest_bar
from ._data import Source, make_source
from ._dist import Group, init_group
from ._errors import StoreError
from ._manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    TOKENS,
    atomic_write,
    is_ours,
    progress_name,
    read_json,
    remove_stray_temps,
    shard_name,
    store_id,
    write_json,
)
from ._settings import DTYPES, harvest_settings
from ._store import Store
from ._writer import BackgroundWriter, InlineWriter

if TYPE_CHECKING:
    from ..core._model import Model

DEFAULT_BATCH_SIZE = 32
DEFAULT_SHARD_BYTES = 256 * 2**20  # the default shard_rows aims at about this many bytes per shard


def harvest(
    model: Model,
    data: Any,
    sites: str | Sequence[str],
    path: str | Path,
    context: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dtype: torch.dtype = torch.float32,
    shard_rows: int | None = None,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    dist_timeout: float | None = None,
    background_writes: bool = True,
) -> Store:
    """Record ``sites`` of ``model`` over ``data`` into a sharded store at ``path``; returns the opened Store.

    ``data``: a list (or iterable) of texts, a path to a .txt (one document per line) / .jsonl (field
    ``text``) / .parquet (column ``text``) file, or token ids (a LongTensor ``[n, context]`` or an iterable
    of them). Texts are packed: each document is followed by the EOS token, the stream is cut into rows of
    exactly ``context`` tokens (default 128; for token ids, their width) and the last incomplete row is
    dropped. ``sites``: names or globs (``"blocks.*.resid_post"``); each must give ``[batch, pos, ...]``.
    ``batch_size``: sequences per forward. ``dtype``: float32, bfloat16 or float16 on disk.
    ``shard_rows``: sequences per shard (default: about 256 MiB per shard); memory holds
    about three (see ``background_writes``).
    ``resume=True`` continues a stopped harvest, or repairs a finished one: a finished shard is kept only
    when its size, header (store id) and sha256 check out, every other shard is computed and written
    again; without it an existing store is an error unless ``overwrite=True``. A write that fails (a full
    disk) raises ``StoreError`` naming the file; a folder the harvest created is removed while it holds
    no finished shard.

    Under ``torch.distributed`` (or torchrun, which this joins with gloo), rank ``r`` computes shards
    ``k % world_size == r``; rank 0 writes the merged manifest. ``dist_timeout`` (default
    ``$TSI_DIST_TIMEOUT`` or 300 s) bounds every wait on another rank.

    ``background_writes=True`` (default) writes each finished shard (serialise, sha256, fsync, rename) on
    one background thread while the next shard is computed; a shard is listed in the manifest only once it
    is durable, in shard order, and at most one shard is being written at a time (memory: about three
    shards). ``False`` writes in line, as the shard is finished. The bytes written are the same.
    """
    from ..core import Model

    if not isinstance(model, Model):
        raise InputError(
            f"harvest needs a tsi model (tsi.load(...) or tsi.wrap(module, tokenizer)), not a {type(model).__name__}"
        )
    if dtype not in DTYPES:
        raise InputError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16, not {dtype}")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, not {batch_size}")
    if shard_rows is not None and shard_rows < 1:
        raise InputError(f"shard_rows must be at least 1 sequence, not {shard_rows}")
    if context is not None and context < 1:
        raise InputError(f"context must be at least 1 token, not {context}")
    names = _site_names(model, sites)
    folder = Path(path)
    existed = _io.nearest_existing(folder.absolute())  # folders below it are created by this harvest
    created = not folder.exists()
    fresh = created or not (folder / MANIFEST).exists()  # no store here before: what we leave is ours
    _check_folder(folder)
    group = None
    try:
        source = make_source(data, model.tokenizer, context)
        group = init_group(dist_timeout)
        return _Harvest(model, names, folder, source, batch_size, dtype, group, background_writes).run(
            shard_rows, resume, overwrite, progress
        )
    except BaseException:
        if fresh:  # leave nothing behind when the harvest failed before a shard was written
            _remove_if_no_shards(folder, existed if created else None)
        raise
    finally:
        if group is not None:
            group.close()


def _site_names(model: Model, sites: str | Sequence[str]) -> list[str]:
    if isinstance(sites, str):
        sites = [s.strip() for s in sites.split(",") if s.strip()] if "," in sites else [sites]
    if not sites:
        raise InputError("no sites given; pass e.g. sites=['blocks.6.resid_post'] or 'blocks.*.resid_post'")
    names: list[str] = []
    for spec in sites:
        for site in model.resolve(spec):  # raises SiteNotFoundError with suggestions
            if site.name not in names:
                names.append(site.name)
    if not names:
        raise InputError(
            f"the sites {list(sites)} matched no site of the model; list them with model.sites()"
        )
    return names


def _check_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise StoreError(f"cannot write a store to {str(folder)!r}: it is a file; give a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{id(folder)}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StoreError(
            f"cannot write a store to {str(folder)!r} ({exc.strerror or exc}); choose a writable folder"
        ) from None


def _remove_if_no_shards(folder: Path, existed: Path | None) -> None:
    """Delete the manifest and temp files of a harvest that failed before its first shard was written, and
    the folders it created (those below ``existed``; ``None``: none) when nothing else is in them."""
    with contextlib.suppress(OSError):
        if any(folder.glob("shard-*.safetensors")):
            return  # finished shards: resume=True continues from them
        for p in folder.iterdir():
            if p.name == MANIFEST or is_ours(p.name):
                with contextlib.suppress(OSError):
                    os.unlink(p)
        d = folder.absolute()
        while existed is not None and d != existed and existed in d.parents:
            d.rmdir()  # only succeeds when nothing else is there
            d = d.parent


class _Harvest:
    def __init__(self, model: Model, names: list[str], folder: Path, source: Source, batch_size: int,
                 dtype: torch.dtype, group: Group, background_writes: bool = True):  # fmt: skip
        self.model, self.names, self.folder, self.source = model, names, folder, source
        self.batch_size, self.dtype, self.group = batch_size, dtype, group
        self.background_writes = background_writes
        self._spare: ShardBuffer | None = None  # a written shard's buffer, reused for the next shard
        self.context = source.context
        self.tag = f"rank{group.rank}-"

    # ---- the plan -------------------------------------------------------------------------------
    def run(self, shard_rows: int | None, resume: bool, overwrite: bool, progress: bool) -> Store:
        g = self.group
        old = _resume.existing(self.folder, resume, overwrite)
        rows = self.source.rows()
        first = next(rows, None)
        if first is None:
            raise InputError(
                f"the data gives no complete row of {self.context} tokens "
                f"({self.source.dropped_tail_tokens} tokens in all); give more text or a smaller context"
            )
        shapes = self._probe(first)
        if shard_rows is None:
            old_rows = (old or {}).get("shard_rows")
            if isinstance(old_rows, int) and not isinstance(old_rows, bool) and old_rows >= 1:
                shard_rows = old_rows
            else:
                shard_rows = self._default_shard_rows(shapes)
        self.shard_rows: int = shard_rows
        self.settings = harvest_settings(self.model, shapes, self.dtype, self.context, self.batch_size,
                                         shard_rows, self.source)  # fmt: skip
        # The id of the store: kept from the store resumed (None: a store written before ids, continued
        # without one), else computed from the settings (the same on every rank).
        self.store_id = old.get("store_id") if resume and old is not None else store_id(self.settings)
        check = {**self.settings, "store_id": self.store_id}
        done = _resume.reusable(self.folder, old, self.settings, check, g) if resume and old else {}
        if resume and old and not g.distributed and _resume.whole(self.folder, old, done):
            return Store(self.folder)  # finished, and every shard checked out: nothing to do

        g.barrier(
            "the start of the harvest"
        )  # every rank has read the old manifest before rank 0 rewrites it
        if g.rank == 0:
            if old is not None and not resume:  # overwrite=True
                _resume.clear(self.folder)
            write_json(self.folder / MANIFEST, self._manifest(list(done.values()), complete=False), self.tag)
        mine = {k: e for k, e in done.items() if k % g.world_size == g.rank}
        g.barrier("the initial manifest")
        if g.distributed:  # record the reused shards of this rank at once, in case it dies before the next
            self._write_progress(mine, None, done=False)

        n_seq = self._loop(_chain(first, rows), mine, progress)

        n_shards = math.ceil(n_seq / self.shard_rows)
        finished = dict(mine)
        if not g.distributed:
            self._finish(finished, n_seq, n_shards)
            return Store(self.folder)
        self._write_progress(finished, n_seq, done=True)
        g.barrier("the end of the harvest")
        if g.rank == 0:
            merged: dict[int, dict[str, Any]] = {}
            for r in range(g.world_size):
                prog = read_json(self.folder / progress_name(r))
                if prog.get("n_sequences") != n_seq:
                    raise StoreError(
                        f"rank {r} packed {prog.get('n_sequences')} sequences but rank 0 packed {n_seq}; every "
                        "rank must be given the same data"
                    )
                merged.update({e["index"]: e for e in prog["shards"]})
            self._finish(merged, n_seq, n_shards)
        g.barrier("the merged manifest")
        return Store(self.folder)

    def _loop(self, rows: Iterator[torch.Tensor], mine: dict[int, dict[str, Any]], progress: bool) -> int:
        """Consume every row; compute and write the shards this rank owns that are not finished.

        Finished shards go to the writer (a background thread unless ``background_writes=False``); they are
        recorded (manifest or progress file) only when the writer gives them back durable, in shard order.
        """
        g = self.group
        bar = harvest_bar(progress and g.rank == 0, self.source, self.context)
        self.bar, self.bytes_written, self.t0 = bar, 0, time.perf_counter()
        writer: BackgroundWriter | InlineWriter = (
            BackgroundWriter(self._write) if self.background_writes else InlineWriter(self._write)
        )
        n_seq = 0
        shard: ShardBuffer | None = None
        pending: list[torch.Tensor] = []
        with bar:  # a failed harvest ends without a closing progress line: its error is the last word
            try:
                for row in rows:
                    k = n_seq // self.shard_rows
                    n_seq += 1
                    if k % g.world_size != g.rank or k in mine:
                        continue
                    if shard is None or shard.index != k:
                        if shard is not None:
                            self._flush(shard, pending)
                            self._record(writer.submit(shard), mine)
                        shard = self._buffer(k)
                    pending.append(row)
                    if len(pending) == self.batch_size:
                        self._flush(shard, pending)
                        self._record(writer.poll(), mine)  # record shards as soon as they are durable
                if shard is not None:
                    self._flush(shard, pending)
                    self._record(writer.submit(shard), mine)
                self._record(writer.drain(), mine)
            finally:
                writer.close()  # after an error or interrupt: stops the writer, waits for the shard it writes
        return n_seq

    def _buffer(self, index: int) -> ShardBuffer:
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.reset(index)
            return spare
        return ShardBuffer(index, self.shard_rows, self.context, self.shapes, self.dtype)

    def _record(
        self, written: list[tuple[ShardBuffer, dict[str, Any]]], mine: dict[int, dict[str, Any]]
    ) -> None:
        for shard, entry in written:
            mine[shard.index] = entry
            self.bytes_written += entry["bytes"]
            self._after_shard(mine)
            self._spare = shard

    # ---- computing ------------------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            run = self.model.run(ids, cache=self.names, return_logits=False)
        return {name: run.cache[name] for name in self.names}

    def _probe(self, first: torch.Tensor) -> dict[str, tuple[int, ...]]:
        """Per-token shape of every site, from a forward of the first row (fails before writing anything)."""
        shapes = {}
        for name, act in self._forward(first[None]).items():
            if act.ndim < 3 or tuple(act.shape[:2]) != (1, self.context):
                raise InputError(
                    f"the site {name!r} gives {list(act.shape)} for one row of {self.context} tokens, not "
                    "[batch, pos, ...]; a store holds per-token activations (attention patterns cannot be stored)"
                )
            shapes[name] = tuple(act.shape[2:])
        self.shapes = shapes
        return shapes

    def _flush(self, shard: ShardBuffer, pending: list[torch.Tensor]) -> None:
        if not pending:
            return
        ids = torch.stack(pending)  # [batch, context]
        acts = self._forward(ids)
        shard.add(ids, acts)
        n = ids.numel()
        pending.clear()
        self.bar.update(n)

    def _write(self, shard: ShardBuffer) -> dict[str, Any]:
        """Serialise, write and fsync one shard; returns its manifest entry. Runs on the writer thread (with
        ``background_writes``): no torch computation here, only reads of the shard's contiguous buffers."""
        from safetensors.torch import save

        n = shard.n_rows
        tensors = {name: buf[:n] for name, buf in shard.acts.items()}
        tensors[TOKENS] = shard.tokens[:n]
        seq0 = shard.index * self.shard_rows
        # One metadata key: safetensors keeps metadata in a hash map, so several keys come out in any order
        # and the same shard would not always have the same bytes.
        info = {"format": FORMAT, "index": shard.index, "seq_start": seq0, "context": self.context}
        if self.store_id is not None:
            info["store_id"] = self.store_id
        meta = {"tsi": json.dumps(info, sort_keys=True)}
        blob = save(tensors, metadata=meta)
        file = self.folder / shard_name(shard.index)
        digest = hashlib.sha256(blob).hexdigest()
        atomic_write(file, blob, self.tag)
        seq1 = seq0 + n // self.context
        return {
            "index": shard.index,
            "file": file.name,
            "seq_start": seq0,
            "seq_stop": seq1,
            "row_start": seq0 * self.context,
            "row_stop": seq1 * self.context,
            "bytes": len(blob),
            "sha256": digest,
        }

    def _after_shard(self, mine: dict[int, dict[str, Any]]) -> None:
        if self.group.distributed:
            self._write_progress(mine, None, done=False)
        else:
            write_json(self.folder / MANIFEST, self._manifest(list(mine.values()), complete=False), self.tag)
        dt = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{len(mine)} shards, disk {self.bytes_written / dt / 1e6:.0f} MB/s")

    # ---- manifests ------------------------------------------------------------------------------
    def _manifest(self, shards: list[dict[str, Any]], complete: bool, **extra: Any) -> dict[str, Any]:
        from .. import __version__

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "complete": complete,
            **self.settings,
            **({"store_id": self.store_id} if self.store_id is not None else {}),
            **extra,
            "world_size": self.group.world_size,
            "writer": f"torch-shard-interpret {__version__}",
            "shards": sorted(shards, key=lambda s: s["index"]),
        }

    def _finish(self, shards: dict[int, dict[str, Any]], n_seq: int, n_shards: int) -> None:
        missing = [k for k in range(n_shards) if k not in shards]
        if missing:
            raise StoreError(f"shards {missing[:5]} were not written by any rank; rerun with resume=True")
        extra = {
            "n_sequences": n_seq,
            "n_rows": n_seq * self.context,
            "n_tokens": n_seq * self.context,
            "dropped_tail_tokens": self.source.dropped_tail_tokens,
        }
        manifest = self._manifest([shards[k] for k in range(n_shards)], complete=True, **extra)
        write_json(self.folder / MANIFEST, manifest, self.tag)
        for p in self.folder.glob("progress.rank*.json"):
            with contextlib.suppress(OSError):
                p.unlink()
        for k in range(n_shards, n_shards + 10**6):  # shards beyond the data (an old, longer run)
            if not (self.folder / shard_name(k)).exists():
                break
            (self.folder / shard_name(k)).unlink()
        remove_stray_temps(self.folder)

    def _write_progress(self, shards: dict[int, dict[str, Any]], n_seq: int | None, done: bool) -> None:
        prog = {"rank": self.group.rank, "world_size": self.group.world_size, "done": done,
                "n_sequences": n_seq, "shards": sorted(shards.values(), key=lambda s: s["index"])}  # fmt: skip
        write_json(self.folder / progress_name(self.group.rank), prog, self.tag)

    def _default_shard_rows(self, shapes: dict[str, tuple[int, ...]]) -> int:
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        per_seq = self.context * (sum(math.prod(s) for s in shapes.values()) * itemsize + 4)
        n = max(1, DEFAULT_SHARD_BYTES // per_seq)
        return max(self.batch_size, n // self.batch_size * self.batch_size)


def _chain(first: torch.Tensor, rest: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    yield first
    yield from rest
