"""Models shared across test modules, loaded at most once per test session.

``embedded_model()`` loads the embedded SmolLM2-135M through the normal cache (``$TSI_CACHE`` or
``~/.cache/torch-shard-interpret``): the first run of the suite on a machine converts the GGUF file
(about 15 s), later runs read the cache.
"""

from __future__ import annotations

from typing import Any

_EMBEDDED: Any = None


def embedded_model() -> Any:
    """``tsi.load("smollm2-135m")``, loaded once per process and shared (treat it as read-only)."""
    global _EMBEDDED
    if _EMBEDDED is None:
        import torch_shard_interpret as tsi

        _EMBEDDED = tsi.load("smollm2-135m")
    return _EMBEDDED
