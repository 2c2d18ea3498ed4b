"""What every subcommand shares: the model registry used instead of loading, and the loader."""

from __future__ import annotations

from typing import Any

# name -> an already wrapped tsi.Model, used instead of loading by every subcommand (tests, notebooks):
#   PRELOADED["tiny"] = tsi.wrap(module, tokenizer); main(["report", "...", "--model", "tiny"])
PRELOADED: dict[str, Any] = {}


def load_model(name: str) -> Any:
    """``PRELOADED[name]`` if present, else ``tsi.load(name)``."""
    model = PRELOADED.get(name)
    if model is None:
        import torch_shard_interpret as tsi

        model = tsi.load(name)
    return model
