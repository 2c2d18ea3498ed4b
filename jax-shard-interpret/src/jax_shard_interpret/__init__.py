"""jax-shard-interpret: interpretability on your own Flax NNX and Equinox modules (alias ``jsi``).

``jsi.wrap(module)`` names every sub-module as a site; ``out, cache = jsi.run(model, x, cache=...,
interventions=...)`` is pure and jit-compiled, so it also works under ``jax.vmap``, ``jax.grad`` and with
sharded arrays. Site names, the activation store and the SAE format are shared with torch-shard-interpret.
"""

from __future__ import annotations

from ._adapters import GPT2, LLAMA, Adapter
from ._errors import InputError, InterventionError, JsiError, ModelError, SiteNotFoundError
from ._interventions import Ablate, Add, Fn, Intervention, Patch, ProjectOut, Scale, Set, SiteContext
from ._model import Config, Model, wrap
from ._run import Cache, run

__version__ = "0.1.0"

__all__ = [
    "GPT2", "LLAMA", "Ablate", "Adapter", "Add", "Cache", "Config", "Fn", "InputError", "Intervention",
    "InterventionError", "JsiError", "Model", "ModelError", "Patch", "ProjectOut", "Scale", "Set",
    "SiteContext", "SiteNotFoundError", "run", "wrap", "__version__",
]  # fmt: skip


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        mod = importlib.import_module(_LAZY[name][0], __name__)
        return getattr(mod, _LAZY[name][1]) if _LAZY[name][1] else mod
    raise AttributeError(f"module 'jax_shard_interpret' has no attribute {name!r}")


_LAZY = {
    "models": (".models", None),
    "lens": (".lens", None),
    "patching": (".patching", None),
    "steering": (".steering", None),
    "store": (".store", None),
    "sae": (".sae", None),
    "load": (".models", "load"),
    "generate": (".steering", "generate"),
}
