"""torch.distributed glue for data-parallel harvests: rank/world, the process-group timeout, barriers.

A harvest needs no collective but barriers: every rank packs the same rows, computes the shards
``k % world_size == rank`` and writes them into the shared folder; rank 0 merges the manifest.
Barriers use ``monitored_barrier`` on gloo, so a rank that died or stalled makes the others fail with
``HarvestDistributedError`` within the timeout instead of hanging.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch.distributed as dist

from ..core._errors import TsiError
from ..distributed import _group
from ._errors import HarvestDistributedError

DEFAULT_TIMEOUT_S = _group.DEFAULT_TIMEOUT_S
TIMEOUT_ENV = _group.TIMEOUT_ENV


def dist_timeout(seconds: float | None = None) -> float:
    """The timeout in seconds: ``seconds`` if given, else ``$TSI_DIST_TIMEOUT``, else 300 (parsed by
    ``tsi.distributed.timeout_seconds``, the one parser of the setting)."""
    try:
        return _group.timeout_seconds(seconds)
    except TsiError as exc:
        raise HarvestDistributedError(str(exc)) from None


@dataclass
class Group:
    rank: int = 0
    world_size: int = 1
    timeout_s: float = DEFAULT_TIMEOUT_S
    owned: bool = False  # we initialised the process group, so we destroy it

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self, what: str) -> None:
        if not self.distributed:
            return
        import torch.distributed as dist

        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=self.timeout_s), wait_all_ranks=True)
            else:
                dist.barrier()
        except Exception as exc:  # noqa: BLE001 - gloo/NCCL raise RuntimeError or DistBackendError
            detail = " ".join(str(exc).split())[:300]
            raise HarvestDistributedError(
                f"rank {self.rank} of {self.world_size}: another rank did not reach '{what}' within "
                f"{self.timeout_s:g} s (it died or stalled; {TIMEOUT_ENV} sets the timeout): {detail}. "
                "The shards already written are kept; rerun the harvest with resume=True to finish it"
            ) from exc

    def close(self) -> None:
        _group.leave(self.owned, wait=False)
        self.owned = False


def init_group(timeout_s: float | None = None) -> Group:
    """Join the current process group, or start one (gloo) when launched by torchrun without one."""
    timeout = dist_timeout(timeout_s)
    if not dist.is_available():  # pragma: no cover - torch built without distributed
        return Group(timeout_s=timeout)
    if _group.is_initialized():
        live = _group.group_timeout()
        return Group(dist.get_rank(), dist.get_world_size(), live if live is not None else timeout)
    try:
        # Launched by torchrun (or with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set by hand). gloo is
        # enough: the harvest only needs barriers, never a tensor collective.
        started = _group.join("gloo", timeout)
    except Exception as exc:  # noqa: BLE001
        raise HarvestDistributedError(
            f"could not join the process group of {os.environ.get('WORLD_SIZE')} ranks within {timeout:g} s "
            f"({TIMEOUT_ENV} sets the timeout): {' '.join(str(exc).split())[:300]}"
        ) from exc
    if started:
        return Group(dist.get_rank(), dist.get_world_size(), timeout, owned=True)
    return Group(timeout_s=timeout)
