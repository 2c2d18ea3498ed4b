# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false, reportPrivateUsage=false
# (reportPrivateUsage off: this module exists to write torch.nn.Module's own hook tables; _probe checks they still work.)
"""Hooks held for one forward, without handle objects: added to a module's own hook tables, removed in a ``finally``.

``register_forward_hook`` builds a ``RemovableHandle`` per call (weak references to the hook tables, a
class-wide counter, keyword handling); on a tiny model that is about half of what a raw hook costs. A lean
run holds each hook for one forward and removes it itself, so it needs no handle: it puts the hook under a
key of its own in the same ordered dict ``register_forward_hook`` writes, and pops it afterwards. The keys
are negative ints, which torch's counter (shared with the global hooks) never produces, so they collide
with no other hook. ``DIRECT`` is False when this torch's modules do not dispatch hooks from those dicts
(checked once, on a probe module, at import); the public API is used then.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

_KEYS = itertools.count(-1, -1)
next_key = _KEYS.__next__  # a fresh negative key (atomic under the GIL)
Hook = Callable[..., Any]


def add_output_hook(module: nn.Module, hook: Hook) -> Any:
    """Register ``hook(module, args, output)``; returns what ``remove_hook`` takes."""
    if not DIRECT:
        return module.register_forward_hook(hook)
    key = next_key()
    module._forward_hooks[key] = hook
    return key


def add_input_hook(module: nn.Module, hook: Hook) -> Any:
    """Register ``hook(module, args, kwargs)`` as a forward pre-hook; returns what ``remove_hook`` takes."""
    if not DIRECT:
        return module.register_forward_pre_hook(hook, with_kwargs=True)
    key = next_key()
    module._forward_pre_hooks[key] = hook
    module._forward_pre_hooks_with_kwargs[key] = True
    return key


def remove_hook(module: nn.Module, key: Any) -> None:
    """Remove a hook added by ``add_output_hook`` or ``add_input_hook`` (a no-op when it is gone already)."""
    if type(key) is not int:
        key.remove()
        return
    module._forward_hooks.pop(key, None)
    module._forward_pre_hooks.pop(key, None)
    module._forward_pre_hooks_with_kwargs.pop(key, None)


def _probe() -> bool:
    """Whether a hook put into the tables directly fires, with the arguments the public API gives, and is
    gone once popped."""
    try:
        module = nn.Identity()
        seen: list[Any] = []
        out_key, in_key = next_key(), next_key()
        module._forward_hooks[out_key] = lambda m, a, o: seen.append(("out", o))
        module._forward_pre_hooks[in_key] = lambda m, a, k: seen.append(("in", k))
        module._forward_pre_hooks_with_kwargs[in_key] = True
        x = torch.zeros(1)
        module(x)
        for table in (
            module._forward_hooks,
            module._forward_pre_hooks,
            module._forward_pre_hooks_with_kwargs,
        ):
            table.pop(out_key, None)
            table.pop(in_key, None)
        module(x)
        return len(seen) == 2 and seen[0] == ("in", {}) and seen[1][0] == "out" and seen[1][1] is x
    except Exception:  # noqa: BLE001 - any surprise means: use the public API
        return False


DIRECT = _probe()
