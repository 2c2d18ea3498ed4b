"""Running ``tsi`` subcommands in tests: the one way to hand them a model without loading one.

from _cli import preload
preload(monkeypatch, "tiny", tsi.wrap(module, tokenizer)); main(["report", "...", "--model", "tiny"])
"""

from __future__ import annotations

from typing import Any

from torch_shard_interpret.cli._common import PRELOADED


def preload(monkeypatch: Any, name: str, model: Any) -> Any:
    """Make ``--model NAME`` use ``model`` in every subcommand for this test (undone by ``monkeypatch``)."""
    monkeypatch.setitem(PRELOADED, name, model)
    return model
