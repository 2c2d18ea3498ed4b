"""Running tsi under ``torchrun``: process groups with timeouts, and caches gathered across ranks.

Tensor-parallel (DTensor, Hugging Face ``tp_plan``) and FSDP2 (``fully_shard``) models need nothing from
here: ``tsi.wrap`` hooks them like any module, and hooks see full tensors. This package holds the few
helpers a script run on several processes needs. It depends on torch only. See ``docs/distributed.md``.
"""

from ._gather import full_cache as full_cache
from ._gather import gather_cache as gather_cache
from ._gather import run as run
from ._group import DistributedError as DistributedError
from ._group import barrier as barrier
from ._group import default_timeout as default_timeout
from ._group import group_timeout as group_timeout
from ._group import init as init
from ._group import is_initialized as is_initialized
from ._group import is_main as is_main
from ._group import join as join
from ._group import launched as launched
from ._group import leave as leave
from ._group import process_group as process_group
from ._group import rank as rank
from ._group import shard as shard
from ._group import timeout_seconds as timeout_seconds
from ._group import world_size as world_size

__all__ = [
    "DistributedError",
    "barrier",
    "default_timeout",
    "full_cache",
    "gather_cache",
    "group_timeout",
    "init",
    "is_initialized",
    "is_main",
    "join",
    "launched",
    "leave",
    "process_group",
    "rank",
    "run",
    "shard",
    "timeout_seconds",
    "world_size",
]
