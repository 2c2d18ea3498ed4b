"""What every subcommand shares: the default model, the ``--model`` option, the registry of preloaded models
used instead of loading, the loader, and the ``--no-progress`` option of subcommands that do long work."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..loading._embedded import NAME as DEFAULT_MODEL

__all__ = [
    "DEFAULT_MODEL", "PRELOADED", "add_model", "add_progress", "api_default", "load_model", "progress_for",
]  # fmt: skip

# name -> an already wrapped tsi.Model (or, for `tsi vision-report`, an image model), used instead of loading
# by every subcommand; the one way tests and notebooks hand a model to the command line:
#   PRELOADED["tiny"] = tsi.wrap(module, tokenizer); main(["report", "...", "--model", "tiny"])
PRELOADED: dict[str, Any] = {}


def add_model(parser: Any, default: str | None = DEFAULT_MODEL, what: str = "model") -> None:
    """The ``--model`` option (a name from ``tsi models``, or the path of a local model folder)."""
    shown = f"default {default}" if default else "default: see below"
    parser.add_argument("--model", default=default, help=f"{what} name or path ({shown})")


def add_progress(parser: Any) -> None:
    """The ``--no-progress`` option of a subcommand that does long work; read it with ``progress_for(args)``."""
    parser.add_argument(
        "--no-progress", action="store_true",
        help="no progress on stderr (by default a bar on a terminal, else a line every 10%% or 10 s)",
    )  # fmt: skip


def progress_for(args: Any) -> bool:
    """The ``progress=`` every long API call of a subcommand gets: on unless ``--no-progress``. Whether stderr is a
    terminal is left to the library's bar (``_progress.progress``), which prints plain lines off one."""
    return not args.no_progress


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
