"""Cooperative cancellation between forwards: a job (or the whole server) stops at the next model call.

A forward pre-hook on the model's root module, present only while a request's work runs, checks the
thread that registered it's cancel event and the server's shutdown event, and raises ``Cancelled`` when either is
set. The core removes every hook of the interrupted call, so a cancelled request leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core._model import Model


class Cancelled(Exception):
    """The request was cancelled (``DELETE /api/jobs/{id}``) or the server is shutting down."""


@contextlib.contextmanager
def cancellable(model: Model, *events: threading.Event) -> Iterator[None]:
    """Run the body with a pre-hook that stops the next forward once any of ``events`` is set."""
    root = getattr(model, "module", None)

    owner = threading.get_ident()

    def hook(module: Any, args: Any, kwargs: Any = None) -> None:
        # Other threads' forwards pass this hook too: only the owner's work is stopped.
        if threading.get_ident() == owner and any(e.is_set() for e in events):
            raise Cancelled("the request was cancelled before the next forward")

    handle = root.register_forward_pre_hook(hook, with_kwargs=True) if root is not None else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()
