"""torch-shard-interpret: look inside any PyTorch model, on one device or many, and steer it.

import torch_shard_interpret as tsi
model = tsi.load("smollm2-135m")
run = model.run("The Eiffel Tower is located in the city of", cache="blocks.*.resid_post")
"""

from ._wrap import wrap as wrap
from .core import *  # noqa: F403 - the core's __all__ is the public surface
from .core import __all__ as _core_all

__version__ = "0.1.0"


def load(name_or_path: str, **kwargs):
    """Load a model by name (``"smollm2-135m"``, the embedded default), local directory or hub id."""
    from .loading import load as _load

    return _load(name_or_path, **kwargs)


def __getattr__(name: str):
    # Technique subpackages import lazily so that `import torch_shard_interpret` needs torch alone.
    import importlib

    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'torch_shard_interpret' has no attribute {name!r}")


_SUBPACKAGES = (
    "adapters",
    "loading",
    "lens",
    "attribution",
    "patching",
    "steering",
    "probes",
    "store",
    "sae",
    "testing",
    "distributed",
    "serve",
    "report",
    "bench",
    "analysis",
    "vision",
    "anomaly",
    "diff",
    "circuits",
)

__all__ = [*_core_all, "wrap", "load", "__version__"]
