"""The ``Adapter`` record and site building live in the core (``core/_adapter.py``, ``core/_build.py``);
this module keeps the names importable from ``torch_shard_interpret.adapters``."""

from ..core._adapter import DEFAULT_CONFIG as DEFAULT_CONFIG
from ..core._adapter import Adapter as Adapter
from ..core._adapter import BlockStyle as BlockStyle
from ..core._adapter import find_module as find_module
from ..core._build import block_modules as block_modules
from ..core._build import build_sites as build_sites
