"""Which adapter fits a model: by ``config.model_type``, else the generic fallback."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from . import gpt_neox, opt
from ._base import Adapter
from .bert import BERT, ROBERTA
from .cohere import COHERE
from .gemma import GEMMA, GEMMA2
from .gpt2 import GPT2
from .gptj import GPTJ
from .llama import LLAMA
from .mixtral import MIXTRAL
from .olmo2 import OLMO2
from .phi3 import PHI3

_ADAPTERS: dict[str, Adapter] = {}
# Per-model adjustments (e.g. GPT-NeoX with use_parallel_residual=False is sequential), by adapter name.
_CONFIGURE: dict[str, Callable[[Adapter, nn.Module], Adapter]] = {
    "gpt_neox": gpt_neox.configure,
    "opt": opt.configure,
}


def register_adapter(
    adapter: Adapter, configure: Callable[[Adapter, nn.Module], Adapter] | None = None
) -> Adapter:
    """Make ``adapter`` the one used for each of its ``model_types``.

    ``configure(adapter, module)``, when given, returns the adapter adjusted to one model (its config,
    module names that changed between transformers versions).
    """
    for model_type in adapter.model_types:
        _ADAPTERS[model_type] = adapter
    if configure is not None:
        _CONFIGURE[adapter.name] = configure
    return adapter


for _a in (
    LLAMA,
    GPT2,
    MIXTRAL,
    PHI3,
    GEMMA,
    GEMMA2,
    OLMO2,
    gpt_neox.GPT_NEOX,
    GPTJ,
    opt.OPT,
    BERT,
    ROBERTA,
    COHERE,
):
    register_adapter(_a)


def registered() -> dict[str, Adapter]:
    return dict(_ADAPTERS)


def adapter_for(module: nn.Module) -> Adapter | None:
    """The adapter for ``module``: registered by model type, else one found by structure, else None."""
    config = getattr(module, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type in _ADAPTERS:
        adapter = _ADAPTERS[model_type]
        configure = _CONFIGURE.get(adapter.name)
        return configure(adapter, module) if configure is not None else adapter
    from ._generic import generic_adapter

    return generic_adapter(module)
