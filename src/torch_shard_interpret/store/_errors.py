"""Errors of activation stores. Each names the file or setting that was wrong and what to do instead."""

from __future__ import annotations

from ..core import TsiError


class StoreError(TsiError):
    """An activation store cannot be written or read as asked."""


class StoreCorruptError(StoreError):
    """A store file is damaged or does not agree with the rest of the store: a shard whose checksum, size or
    header differs from what the manifest says (flipped bytes, truncation, a shard of another store), or a
    manifest whose structure is broken (a dropped entry, row ranges that do not follow each other)."""


class StoreIncompleteError(StoreError):
    """The store's harvest has not finished (it was stopped or is still running)."""


class StoreMismatchError(StoreError):
    """``resume=True`` on a store harvested with other settings (model, sites, dtype, data...)."""


class HarvestDistributedError(StoreError):
    """A data-parallel harvest lost a rank (it died or stalled past the process-group timeout)."""
