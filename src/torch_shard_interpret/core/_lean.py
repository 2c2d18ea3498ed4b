# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""The lean run: record-only ``Model.run`` of a plain module on one tensor, with its set-up done once.

Many small calls (RL policies, toy models, circuit searches) pay the fixed cost of a run more than its
forward. A ``LeanPlan`` keeps what a repeated call can reuse: the resolved sites, their modules and
whether each can be read without unpacking. Each call still registers its own hooks and removes them in
a ``finally`` (nothing is left behind after an error), and each hook acts only in the thread that
registered it. That is the isolation the scopes get from their context variable, without setting one per
call: a forward is one synchronous call, so no other task of that thread can run inside it, and another
thread's forward through the same module is never recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from threading import get_ident
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ._cache import ActivationCache
from ._dtensor import is_dtensor, unshard
from ._fasthooks import DIRECT, add_input_hook, add_output_hook, next_key, remove_hook
from ._inputs import output_logits
from ._result import RunResult
from ._site import Site

if TYPE_CHECKING:
    from ._model import Model


class LeanPlan:
    """The reusable part of a record-only run: one ``(module, is_output, name, whole, get)`` per site."""

    __slots__ = ("entries", "weights")

    def __init__(self, sites: Sequence[Site]):
        # Each module's parameter table and its weight now: parallelizing a module replaces the weight.
        tables = [_params(s.module) for s in sites]
        self.weights = [(t, t.get("weight")) for t in tables]
        self.entries = [
            (
                s.module,
                s.kind == "output",
                s.name,
                s.index in (None, 0) and s.view is None and s.n_heads is None,
                s.get,
            )
            for s in sites
        ]


def _params(module: nn.Module) -> dict[str, Any]:
    """A module's own parameter table (the dict that ``module.weight = ...`` replaces an entry of)."""
    return vars(module)["_parameters"]


def lean_plan(sites: Sequence[Site]) -> LeanPlan | None:
    """A plan for recording ``sites``, or None when one of them needs the general path (a splice part, an
    attention score, a site that needs something of the model, a tensor-parallel module)."""
    for s in sites:
        if s.kind not in ("output", "input") or s.extra or s.requires is not None:
            return None
        if is_dtensor(getattr(s.module, "weight", None)):
            return None
    return LeanPlan(sites)


def one_site_call(model: Model, site: Site) -> Callable[[torch.Tensor], RunResult | None] | None:
    """``model.run(x, cache=site.name)`` for one module output recorded whole, with everything bound once; the
    call returns None (the caller takes the general lean run) when the module's weight was replaced since.
    None instead of a call when this torch's hook tables cannot be written directly (``_fasthooks.py``)."""
    module: nn.Module = model.module
    mod, name, get = site.module, site.name, site.get
    table = _params(mod)
    weight = table.get("weight")
    tensor, grad_enabled, no_grad = torch.Tensor, torch.is_grad_enabled, torch.no_grad
    if not DIRECT:  # the general lean run then, through the public API
        return None

    def call(x: torch.Tensor) -> RunResult | None:
        if table.get("weight") is not weight:
            return None
        store: dict[str, torch.Tensor] = {}
        me = get_ident()

        def hook(m: nn.Module, args: Any, output: Any) -> None:
            if get_ident() == me:
                store[name] = output.detach() if type(output) is tensor else _keep(get(output), None)

        hooks = mod._forward_hooks  # the table register_forward_hook writes (``_fasthooks.py``)  # pyright: ignore[reportPrivateUsage]
        key = next_key()
        hooks[key] = hook
        try:
            if grad_enabled():
                with no_grad():
                    output = module(x)
            else:
                output = module(x)
        finally:
            hooks.pop(key, None)
        logits = output if type(output) is tensor else output_logits(output)
        return RunResult(logits, ActivationCache(store), None, None, {}, output, model.tokenizer)

    return call


def lean_call(model: Model, x: torch.Tensor, cache: Any, device: torch.device | str | None) -> RunResult:
    """``model.run(x, cache=cache)`` of a plain module on one tensor: ``module(x)`` without autograd, recording
    the sites of the plan kept for ``cache`` (``model._run_scoped`` when the sites need the general path).

    Written as one function on purpose: on a tiny model each Python call more is a visible share of the run.
    """
    plans: dict[Any, LeanPlan | None] = model._plans  # pyright: ignore[reportPrivateUsage] - Model's own helper
    key: Any = None
    try:
        key = cache if cache is None or isinstance(cache, str) else tuple(cache)
        plan = plans[key]
        if plan is not None:
            for table, weight in plan.weights:
                if table.get("weight") is not weight:  # replaced since (made tensor-parallel, say)
                    raise KeyError(key)
    except KeyError:
        plan = plans[key] = lean_plan(model.resolve(cache))
        if (
            plan is not None
            and isinstance(key, str)
            and len(plan.entries) == 1
            and plan.entries[0][1]
            and plan.entries[0][3]
        ):
            one = one_site_call(model, model.resolve(key)[0])
            if one is not None:
                model._one_site[key] = one  # pyright: ignore[reportPrivateUsage]
    except TypeError:  # an unhashable spec: no plan
        plan = None
    if plan is None:
        return model._run_scoped(x, cache, device)  # pyright: ignore[reportPrivateUsage] - Model's own path
    module: nn.Module = model.module
    store: dict[str, torch.Tensor] = {}
    me = get_ident()
    handles: list[tuple[nn.Module, Any]] = []
    try:
        for mod, is_output, name, whole, get in plan.entries:
            if is_output:
                handles.append((mod, add_output_hook(mod, _output_hook(me, store, name, whole, get, device))))
            else:
                handles.append((mod, add_input_hook(mod, _input_hook(me, store, name, get, device))))
        if torch.is_grad_enabled():
            with torch.no_grad():
                output = module(x)
        else:
            output = module(x)
    finally:
        for mod, handle in handles:
            remove_hook(mod, handle)
    logits = output if type(output) is torch.Tensor else output_logits(output)
    return RunResult(logits, ActivationCache(store), None, None, {}, output, model.tokenizer)


def _keep(value: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    if is_dtensor(value):
        value = unshard(value)[0]
    kept = value.detach()
    return kept if device is None else kept.to(device)


def _output_hook(
    me: int,
    store: dict[str, torch.Tensor],
    name: str,
    whole: bool,
    get: Callable[[Any], torch.Tensor],
    device: torch.device | str | None,
) -> Callable[[nn.Module, Any, Any], None]:
    tensor = torch.Tensor
    if whole and device is None:  # the common case: the module's own output tensor, kept where it is

        def fast(module: nn.Module, args: Any, output: Any) -> None:
            if get_ident() == me:
                if type(output) is tensor:
                    store[name] = output.detach()
                else:
                    store[name] = _keep(get(output), None)

        return fast

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        if get_ident() == me:
            store[name] = _keep(output if whole and type(output) is tensor else get(output), device)

    return hook


def _input_hook(
    me: int,
    store: dict[str, torch.Tensor],
    name: str,
    get: Callable[[Any], torch.Tensor],
    device: torch.device | str | None,
) -> Callable[[nn.Module, Any, Any], None]:
    def pre_hook(module: nn.Module, args: Any, kwargs: Any) -> None:
        if get_ident() == me:
            store[name] = _keep(get((args, kwargs)), device)

    return pre_hook
