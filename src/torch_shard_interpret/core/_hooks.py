# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""Scopes: the hooks of one run or one ``intervene`` context, with guaranteed removal.

Hooks are plain PyTorch module hooks on the user's own modules, put into their hook tables without a
handle object where this torch allows it (``_fasthooks.py``; attention-score hooks use the public API).
Each scope registers its hooks on entry and removes exactly those hooks on exit, whatever happened in
between (success, an exception in the model or in a user function, KeyboardInterrupt). A hook only acts
while its scope is active
in the calling thread or task (a context variable), so two threads sharing one model never see each
other's interventions.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ._dtensor import is_dtensor, unshard, unshard_local
from ._errors import ReentrantRunError, SiteNotReachedError
from ._fasthooks import add_input_hook, add_output_hook, remove_hook
from ._interventions import HookContext, Intervention
from ._site import Site

_ACTIVE: ContextVar[frozenset[int]] = ContextVar("tsi_active_scopes", default=frozenset())
# The site whose intervention code is running in this thread or task (None outside intervention code).
_IN_INTERVENTION: ContextVar[str | None] = ContextVar("tsi_in_intervention", default=None)
_IDS = itertools.count(1)
in_intervention = _IN_INTERVENTION.get  # the site whose intervention code runs now (None outside it)
# Set while Model.generate runs (positions past the current sequence are still to come, not errors): the
# absolute positions each (intervention, site) chose so far in this generation, by negative selectors.
GENERATING: ContextVar[dict[tuple[int, str], set[int]] | None] = ContextVar("tsi_generating", default=None)


class StopForward(Exception):  # noqa: N818 - control flow, not an error
    """Raised inside a hook to end the forward pass once every requested site has been recorded."""


class Scope:
    """Hooks for a set of sites: interventions to apply and sites to record.

    ``cache`` receives recorded values; ``grad`` keeps recorded values in the autograd graph;
    ``stop`` ends the forward once every recorded site has run; ``root`` gets a pre-hook that reads
    the position offset of KV-cached forwards when an intervention needs absolute positions.
    """

    def __init__(
        self,
        interventions: dict[Site, list[Intervention]] | None = None,
        record: list[Site] | None = None,
        *,
        cache: dict[str, torch.Tensor] | None = None,
        cache_device: torch.device | str | None = None,
        grad: bool = False,
        stop: bool = False,
        root: nn.Module | None = None,
        generating: bool = False,
    ):
        self.id = next(_IDS)
        self.interventions = interventions or {}
        self.record = record or []
        self.cache = cache if cache is not None else {}
        self.cache_device = cache_device
        self.grad = grad
        self.stop = stop
        self.root = root
        self.generating = generating
        self.offset = 0
        self.fired: dict[str, int] = {}
        self._pending = {s.name for s in self.record} if stop else set[str]()
        self._handles: list[tuple[nn.Module, Any]] = []  # (module, key or handle) for ``remove_hook``
        self._token = None

    # ---- life cycle ---------------------------------------------------------------------------
    def __enter__(self) -> Scope:
        try:
            if not self.interventions and not self.grad and all(map(_plain_record, self.record)):
                for site in self.record:  # the common case: record only, one light hook per site
                    self._add_recorder(site)
                self._token = _ACTIVE.set(_ACTIVE.get() | {self.id})
                return self
            # Group requested sites by the place they are read at (splice sites read at their parent).
            points: dict[Site, list[tuple[Site, list[Intervention], bool]]] = {}
            recorded = set(self.record)
            for site in [*self.interventions, *(s for s in self.record if s not in self.interventions)]:
                point = site.extra.get("parent", site)
                points.setdefault(point, []).append(
                    (site, self.interventions.get(site, []), site in recorded)
                )
            for point, entries in points.items():
                self._add(point, entries)
            if self.root is not None and any(
                iv.needs_offset for ivs in self.interventions.values() for iv in ivs
            ):
                self._handles.append((self.root, add_input_hook(self.root, self._offset_hook)))
        except BaseException:
            self._remove()
            raise
        self._token = _ACTIVE.set(_ACTIVE.get() | {self.id})
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._remove()
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None

    def _remove(self) -> None:
        while self._handles:
            remove_hook(*self._handles.pop())

    def unreached(self) -> list[str]:
        return [s.name for s in self.interventions if s.name not in self.fired]

    def check_reached(self, stopped: bool = False) -> None:
        """Raise ``SiteNotReachedError`` for interventions that never ran (``stopped``: the run ended early)."""
        missed = self.unreached()
        if not missed:
            return
        names = ", ".join(map(repr, missed))
        if stopped:
            raise SiteNotReachedError(
                f"the forward stopped once every cached site was recorded (return_logits=False), before it "
                f"reached {names}, so the intervention there did nothing; pass return_logits=True, or check "
                "that the model runs that module before the cached sites"
            )
        raise SiteNotReachedError(
            f"the forward pass never reached {names}, so the intervention there did "
            "nothing; check the site name and that the model really runs that module"
        )

    # ---- hooks --------------------------------------------------------------------------------
    def _offset_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.id in _ACTIVE.get():
            self.offset = position_offset(args, kwargs)

    def _add(self, site: Site, entries: list[tuple[Site, list[Intervention], bool]]) -> None:
        """One hook at ``site``'s place: ``entries`` are the site itself and any splice sites derived from it."""
        body = self._make_body(site, entries)
        my_id = self.id
        active = _ACTIVE.get
        if site.kind == "output":

            def hook(module: nn.Module, args: Any, output: Any) -> Any:
                if my_id not in active():
                    return None
                return body(output)

            self._handles.append((site.module, add_output_hook(site.module, hook)))
        elif site.kind == "scores":
            self._add_scores(site, body)
        else:

            def pre_hook(module: nn.Module, args: Any, kwargs: Any) -> Any:
                if my_id not in active():
                    return None
                return body((args, kwargs))

            self._handles.append((site.module, add_input_hook(site.module, pre_hook)))

    def _add_recorder(self, site: Site) -> None:
        """A hook that only records ``site`` (no intervention, no gradient, no splice, no tensor parallelism)."""
        my_id, active, cache, name = self.id, _ACTIVE.get, self.cache, site.name
        device, pending, stop, get = self.cache_device, self._pending, self.stop, site.get
        tensor = torch.Tensor
        whole = site.index in (None, 0) and site.view is None and site.n_heads is None

        def record(payload: Any) -> None:
            value = payload if whole and type(payload) is tensor else get(payload)
            if is_dtensor(value):
                value = unshard(value)[0]
            kept = value.detach()
            cache[name] = kept if device is None else kept.to(device)
            if stop:
                pending.discard(name)
                if not pending:
                    raise StopForward

        if site.kind == "output":

            def hook(module: nn.Module, args: Any, output: Any) -> None:
                if my_id in active():
                    record(output)

            self._handles.append((site.module, add_output_hook(site.module, hook)))
        else:

            def pre_hook(module: nn.Module, args: Any, kwargs: Any) -> None:
                if my_id in active():
                    record((args, kwargs))

            self._handles.append((site.module, add_input_hook(site.module, pre_hook)))

    def _add_scores(self, site: Site, body: Callable[[Any], Any]) -> None:
        """The first softmax input inside ``site.module``'s forward: a torch-function mode entered by a pre-hook
        and left by a forward hook that runs even when the forward raises."""
        my_id = self.id
        modes: list[FirstSoftmax] = []

        def enter(module: nn.Module, args: Any) -> None:
            if my_id in _ACTIVE.get():
                mode = FirstSoftmax(body)
                mode.__enter__()
                modes.append(mode)

        def leave(module: nn.Module, args: Any, output: Any) -> None:
            if my_id in _ACTIVE.get() and modes:
                modes.pop().__exit__(None, None, None)

        self._handles.append((site.module, site.module.register_forward_pre_hook(enter)))
        self._handles.append((site.module, site.module.register_forward_hook(leave, always_call=True)))

    def _make_body(
        self, site: Site, entries: list[tuple[Site, list[Intervention], bool]]
    ) -> Callable[[Any], Any]:
        own = [e for e in entries if e[0] is site]
        splices: dict[Any, dict[str, tuple[Site, list[Intervention], bool]]] = {}
        for entry in entries:
            if entry[0] is not site:
                splices.setdefault(entry[0].extra["splice"], {})[entry[0].extra["part"]] = entry
        process = self._process
        grad = self.grad
        in_place = bool(site.extra.get("in_place"))

        def body(payload: Any) -> Any:
            value = site.get(payload)
            restore = None
            if is_dtensor(value):
                value, restore = unshard(value)
            elif (local := unshard_local(site, value)) is not None:  # a tensor-parallel feature slice
                value, restore = local
            changed = False
            if own:  # the site's own interventions; it is recorded after its splices, as the model sees it
                value, changed = process(own[0][0], own[0][1], False, value)
            for splice, parts in splices.items():
                latents, error = splice.parts(value, detached=grad)
                rebuilt = grad and any(e[2] for e in parts.values())  # keep recorded parts in the graph
                if "latents" in parts:
                    latents, c = process(*parts["latents"], latents)
                    rebuilt |= c
                if "error" in parts:
                    error, c = process(*parts["error"], error)
                    rebuilt |= c
                if rebuilt:
                    value, changed = splice.join(latents, error), True
            if own and own[0][2]:
                value, c = process(own[0][0], (), True, value, count=False)
                # A gathered (tensor-parallel) value reaches the output only if the model continues with it.
                changed |= c or (grad and restore is not None)
            if not changed:
                return None
            if in_place:  # the module's input is also the residual stream: change the tensor itself
                raw = site.get(payload)
                if raw is not value:
                    raw.copy_(value)
                return None
            return site.put(payload, value if restore is None else restore(value))

        return body

    def _process(
        self,
        site: Site,
        ivs: Sequence[Intervention],
        record: bool,
        value: torch.Tensor,
        count: bool = True,
    ) -> tuple[torch.Tensor, bool]:
        """Apply ``ivs`` to ``value`` and record it; returns the value the model continues with."""
        name = site.name
        n = self.fired.get(name, 0)
        if count:
            self.fired[name] = n + 1
        changed = False
        if ivs:
            generation = GENERATING.get()
            if generation is None and self.generating:
                generation = {}
            ctx = HookContext(site, self.offset, generation is not None, n, generation)
            guard = _IN_INTERVENTION.set(name)
            try:
                for iv in ivs:
                    new = iv(value, ctx)
                    if new is not value:
                        value, changed = new, True
            finally:
                _IN_INTERVENTION.reset(guard)
        if record:
            if self.grad:
                if not value.requires_grad and site.extra.get("in_place") and value.grad_fn is None:
                    value.requires_grad_(True)  # the same tensor feeds both branches: keep it, now tracked
                elif not value.requires_grad:
                    value = value.detach().requires_grad_(True)
                    changed = True
                elif site.n_heads is not None or site.view is not None:
                    changed = True  # route the downstream graph through this view
                self.cache[name] = value
            else:
                kept = value.detach()
                if self.cache_device is not None:
                    kept = kept.to(self.cache_device)
                self.cache[name] = kept
            if self.stop:
                self._pending.discard(name)
                if not self._pending:
                    raise StopForward
        return value, changed


def _plain_record(site: Site) -> bool:
    """Whether recording ``site`` needs nothing but reading it: a module output or input that is not a splice
    part and whose module is not a tensor-parallel linear layer (its features would be this rank's slice)."""
    return site.kind != "scores" and not site.extra and not is_dtensor(getattr(site.module, "weight", None))


_SOFTMAX = (torch.nn.functional.softmax, torch.softmax, torch.Tensor.softmax)


class FirstSoftmax(TorchFunctionMode):
    """Hands the input of the first softmax call to ``body`` (which may replace it), then steps aside."""

    def __init__(self, body: Callable[[Any], Any]):
        super().__init__()
        self.body = body
        self.done = False

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        if not self.done and func in _SOFTMAX and args and torch.is_tensor(args[0]):
            self.done = True
            new = self.body(args[0])
            if new is not None:
                args = (new, *args[1:])
        return func(*args, **kwargs)


def refuse_reentry(call: str) -> None:
    """Raise ``ReentrantRunError`` when ``call`` (``run``, ``generate``...) comes from intervention code."""
    site = _IN_INTERVENTION.get()
    if site is not None:
        raise ReentrantRunError(
            f"model.{call} was called from inside the intervention at {site!r}, which would run the model "
            "within its own forward (and again at every nested call); run it before, and pass what it "
            "computes (a cache or a tensor) to the intervention"
        )


def position_offset(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """The absolute position of the first token of this forward, from what the model really receives.

    In order: explicit ``cache_position`` ids; a KV-cache object under any keyword or position (anything
    with ``get_seq_length``: ``past_key_values=`` up to transformers 4.x, ``cache=`` in 5.x); a legacy
    tuple of ``(key, value)`` tensors under a keyword naming a cache; else an attention mask longer than
    the input ids (the mask covers the cached prefix too). 0 when none of them is there.
    """
    cache_position = kwargs.get("cache_position")
    if torch.is_tensor(cache_position) and cache_position.numel() > 0:
        return int(cache_position.reshape(-1)[0])
    values = [*kwargs.values(), *args]
    for value in values:
        seq_len = getattr(value, "get_seq_length", None)
        if callable(seq_len):
            return int(seq_len())  # type: ignore[arg-type]
    for key, value in kwargs.items():
        if ("past" in key or "cache" in key) and isinstance(value, (tuple, list)) and value:
            first = value[0]
            if isinstance(first, (tuple, list)) and first and torch.is_tensor(first[0]):
                return int(first[0].shape[-2])
    ids = kwargs.get("input_ids", kwargs.get("inputs_embeds"))
    mask = kwargs.get("attention_mask")
    if torch.is_tensor(ids) and torch.is_tensor(mask) and mask.ndim == 2 and ids.ndim >= 2:
        return max(0, int(mask.shape[-1]) - int(ids.shape[1]))
    return 0
