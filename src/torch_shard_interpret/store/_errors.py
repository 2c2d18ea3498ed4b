"""Errors of activation stores. Each names the file or setting that was wrong and what to do instead."""

from __future__ import annotations

from ..core import TsiError


class StoreError(TsiError):
    """An activation store cannot be written or read as asked."""


class StoreCorruptError(StoreError):
    """A shard file does not match the checksum or size its manifest recorded (flipped bytes, truncation)."""


class StoreIncompleteError(StoreError):
    """The store's harvest has not finished (it was stopped or is still running)."""


class StoreMismatchError(StoreError):
    """``resume=True`` on a store harvested with other settings (model, sites, dtype, data...)."""


class HarvestDistributedError(StoreError):
    """A data-parallel harvest lost a rank (it died or stalled past the process-group timeout)."""
