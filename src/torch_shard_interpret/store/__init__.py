"""Activation stores: harvest sites of a model over a corpus into sharded safetensors files, read them back.

store = tsi.store.harvest(model, texts, sites=["blocks.6.resid_post"], path="acts/", context=128)
store = tsi.store.open("acts/")
store.read("blocks.6.resid_post", 0, 1000)            # [1000, d_model], memory-mapped
for batch in store.batches("blocks.6.resid_post", batch_size=4096, shuffle=True, seed=0): ...
"""

from ._config import HarvestConfig as HarvestConfig
from ._dist import DEFAULT_TIMEOUT_S as DEFAULT_TIMEOUT_S
from ._dist import TIMEOUT_ENV as TIMEOUT_ENV
from ._errors import HarvestDistributedError as HarvestDistributedError
from ._errors import StoreCorruptError as StoreCorruptError
from ._errors import StoreError as StoreError
from ._errors import StoreIncompleteError as StoreIncompleteError
from ._errors import StoreMismatchError as StoreMismatchError
from ._harvest import harvest as harvest
from ._store import Store as Store
from ._store import open as open  # noqa: A004 - tsi.store.open is the public name

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "HarvestConfig",
    "HarvestDistributedError",
    "Store",
    "StoreCorruptError",
    "StoreError",
    "StoreIncompleteError",
    "StoreMismatchError",
    "harvest",
    "open",
]
