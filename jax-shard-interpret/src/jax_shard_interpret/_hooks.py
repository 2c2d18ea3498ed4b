"""Trace-time hooks: every sub-module of a Flax NNX or Equinox model becomes a site, without editing it.

While ``jsi.run`` traces the model, the ``__call__`` of each module class in the model's tree is swapped
for a wrapper that looks the module up by identity; a module with a site plan applies the plan's
interventions to its first input and/or its output (the first element of a tuple output), and records
the values to cache. The classes are restored before the trace returns, so nothing is left behind and the
compiled program holds only the array operations of the plan (no Python runs per call after jit).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ._errors import ModelError
from ._interventions import SiteContext

_LOCK = threading.RLock()
_MISSING = object()


def backend_of(module: Any) -> str:
    """``"nnx"`` or ``"eqx"``; ``ModelError`` for anything else."""
    try:
        from flax import nnx

        if isinstance(module, nnx.Module):
            return "nnx"
    except ImportError:
        pass
    try:
        import equinox as eqx

        if isinstance(module, eqx.Module):
            return "eqx"
    except ImportError:
        pass
    raise ModelError(
        f"jsi.wrap takes a Flax NNX module or an Equinox module, not a {type(module).__module__}."
        f"{type(module).__qualname__}"
    )


def iter_modules(module: Any, backend: str) -> Iterator[tuple[str, Any]]:
    """``(path, module)`` for the root (path ``""``) and every callable sub-module, in definition order."""
    if backend == "nnx":
        from flax import nnx

        items = [(".".join(str(p) for p in path), m) for path, m in nnx.iter_modules(module)]
        items.sort(key=lambda pm: pm[0] != "")  # the root first, then definition order
        yield from ((p, m) for p, m in items if _callable(m))
        return
    yield from _walk_eqx(module, "")


def _callable(m: Any) -> bool:
    return "__call__" in dir(type(m))  # a class attribute, not the metaclass's type.__call__


def _walk_eqx(obj: Any, path: str) -> Iterator[tuple[str, Any]]:
    import equinox as eqx

    if isinstance(obj, eqx.Module):
        if _callable(obj):
            yield path, obj
        for f in dataclasses.fields(obj):
            yield from _walk_eqx(getattr(obj, f.name, None), f"{path}.{f.name}" if path else f.name)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk_eqx(v, f"{path}.{i}" if path else str(i))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk_eqx(v, f"{path}.{k}" if path else str(k))


@dataclasses.dataclass
class SitePlan:
    """What to do at one side of one module: ``(site name, view, interventions, cache?)`` entries."""

    entries: list[tuple[str, Any, list[Any], bool]]


class Trace:
    """One traced forward: plans by module identity, the cache it fills, the position offset."""

    def __init__(self, plans: dict[tuple[str, str], SitePlan], offset: Any = 0):
        self.plans = plans  # (path, "input" | "output") -> SitePlan
        self.offset = offset
        self.cache: dict[str, Any] = {}
        self.by_id: dict[int, str] = {}
        self.active: set[int] = set()
        self.seen: set[tuple[str, str]] = set()

    def apply(self, key: tuple[str, str], x: Any) -> Any:
        self.seen.add(key)
        for name, view, ivs, keep in self.plans[key].entries:
            v = view.to_site(x) if view is not None else x
            ctx = SiteContext(name, self.offset)
            for iv in ivs:
                if hasattr(iv, "records"):  # an intervention that adds sites of its own (SAE latents)
                    self.cache.update(iv.records(v, ctx))
                v = iv(v, ctx)
            if keep:
                self.cache[name] = v
            x = view.from_site(v, x) if view is not None else v
        return x


def traced_call(module: Any, backend: str, trace: Trace, call: Callable[[Any], Any]) -> Any:
    """Run ``call(module)`` with every planned module's ``__call__`` hooked for ``trace``."""
    paths = {p for p, _ in trace.plans}
    found = {}
    for path, m in iter_modules(module, backend):
        if path in paths:
            found[path] = m
    missing = paths - set(found)
    if missing:
        raise ModelError(f"the model has no callable module at {sorted(missing)!r}")
    with _LOCK:
        trace.by_id = {id(m): p for p, m in found.items()}
        classes = {type(m) for m in found.values()}
        saved = {c: c.__dict__.get("__call__", _MISSING) for c in classes}
        originals = {c: c.__call__ for c in classes}
        try:
            for c in classes:
                c.__call__ = _wrapper(originals[c], trace)
            return call(module)
        finally:
            for c, fn in saved.items():
                if fn is _MISSING:
                    delattr(c, "__call__")
                else:
                    c.__call__ = fn
            trace.by_id = {}


def _wrapper(original: Callable[..., Any], trace: Trace) -> Callable[..., Any]:
    def __call__(self, *args, **kwargs):
        path = trace.by_id.get(id(self))
        if path is None or id(self) in trace.active:
            return original(self, *args, **kwargs)
        if (path, "input") in trace.plans:
            if not args:
                raise ModelError(f"the module at {path!r} was called without a positional input to hook")
            args = (trace.apply((path, "input"), args[0]), *args[1:])
        trace.active.add(id(self))
        try:
            out = original(self, *args, **kwargs)
        finally:
            trace.active.discard(id(self))
        if (path, "output") in trace.plans:
            if isinstance(out, tuple):
                out = (trace.apply((path, "output"), out[0]), *out[1:])
            else:
                out = trace.apply((path, "output"), out)
        return out

    return __call__
