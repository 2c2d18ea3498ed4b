"""What every subcommand shares: the default model, the ``--model`` option, the registry of preloaded models
used instead of loading, and the loader."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..loading._embedded import NAME as DEFAULT_MODEL

__all__ = ["DEFAULT_MODEL", "PRELOADED", "add_model", "api_default", "load_model"]

# name -> an already wrapped tsi.Model (or, for `tsi vision-report`, an image model), used instead of loading
# by every subcommand; the one way tests and notebooks hand a model to the command line:
#   PRELOADED["tiny"] = tsi.wrap(module, tokenizer); main(["report", "...", "--model", "tiny"])
PRELOADED: dict[str, Any] = {}


def add_model(parser: Any, default: str | None = DEFAULT_MODEL, what: str = "model") -> None:
    """The ``--model`` option (a name from ``tsi models``, or the path of a local model folder)."""
    shown = f"default {default}" if default else "default: see below"
    parser.add_argument("--model", default=default, help=f"{what} name or path ({shown})")


def api_default(func: Callable[..., Any], name: str) -> Any:
    """The default of parameter ``name`` of the API function ``func``: an option that stands for it takes its
    default from there, never from a copy written in cli/."""
    param = inspect.signature(func).parameters[name]
    if param.default is inspect.Parameter.empty:
        raise TypeError(f"{func.__qualname__}() has no default for {name!r}")
    return param.default


def load_model(name: str) -> Any:
    """``PRELOADED[name]`` if present, else ``tsi.load(name)``."""
    model = PRELOADED.get(name)
    if model is None:
        import torch_shard_interpret as tsi

        model = tsi.load(name)
    return model
