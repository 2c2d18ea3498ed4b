"""HarvestConfig: how ``tsi.store.harvest`` records a store; the Python API and `tsi harvest` share it.

cfg = tsi.store.HarvestConfig(context=64, dtype="bfloat16")
tsi.store.harvest(model, texts, sites="blocks.*.resid_post", path="acts/", **cfg.harvest_kwargs())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._harvest import DEFAULT_BATCH_SIZE, DTYPES

DTYPE_NAMES = tuple(DTYPES.values())  # float32, bfloat16, float16


@dataclass(frozen=True)
class HarvestConfig:
    """The settings of one harvest (what is recorded, where and how come from the other arguments)."""

    context: int | None = None
    """Tokens per row. Texts are packed into rows of this many tokens (EOS between documents; the last
    incomplete row is dropped). None: 128 for texts, the width of the ids for token ids."""
    batch_size: int = DEFAULT_BATCH_SIZE
    """Rows (sequences) per forward."""
    dtype: str = "float32"
    """The dtype on disk: float32, bfloat16 or float16."""
    shard_rows: int | None = None
    """Rows (sequences) per shard file. None: about 256 MiB per shard."""
    background_writes: bool = True
    """Write each finished shard on a background thread while the next one is computed (same bytes)."""
    dist_timeout: float | None = None
    """Seconds any rank waits for another under torchrun. None: $TSI_DIST_TIMEOUT, else 300."""

    def __post_init__(self) -> None:
        from ..core import InputError

        if self.dtype not in DTYPE_NAMES:
            raise InputError(f"dtype must be one of {', '.join(DTYPE_NAMES)}, not {self.dtype!r}")

    def harvest_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``tsi.store.harvest`` these settings stand for (``dtype`` as a torch dtype)."""
        import torch

        return {
            "context": self.context,
            "batch_size": self.batch_size,
            "dtype": getattr(torch, self.dtype),
            "shard_rows": self.shard_rows,
            "background_writes": self.background_writes,
            "dist_timeout": self.dist_timeout,
        }
