"""Interventions as data: pytrees whose arrays are leaves and whose selectors are static.

``jsi.Set``, ``Patch``, ``Add``, ``Ablate``, ``Scale``, ``ProjectOut`` and ``Fn`` each take optional
``positions=``, ``heads=`` and ``batch=`` selectors (ints, sequences of ints, or a slice for positions;
negative positions count from the end of the sequence seen so far) and an optional ``mask=``: an array
broadcastable to the site that gates the edit (1 = edited, 0 = kept). Selectors are part of the
compiled structure; arrays (values, vectors, scales, masks) are traced, so ``jax.vmap`` over a batch of
interventions, ``jax.grad`` with respect to their arrays and ``jax.jit`` (compiled once per structure)
all work. Positions are absolute: while generating with a KV cache, ``positions=-1`` is each new token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from ._errors import InterventionError
from ._sites import dims


@dataclass(frozen=True)
class SiteContext:
    """What an intervention knows about the call it runs in."""

    name: str
    offset: Any = 0  # absolute position of this forward's first token (an int or a traced scalar)


def _static(sel: Any, what: str) -> Any:
    """A hashable form of a selector."""
    if sel is None:
        return None
    if isinstance(sel, slice):
        return ("slice", sel.start, sel.stop, sel.step)
    if isinstance(sel, bool):
        raise InterventionError(f"{what}= must be an int or a sequence of ints, not a bool")
    if isinstance(sel, int):
        return (int(sel),)
    try:
        return tuple(int(s) for s in sel)
    except TypeError:
        raise InterventionError(
            f"{what}= must be an int, a sequence of ints or a slice, not {sel!r}"
        ) from None


class Intervention:
    """Base class; subclasses set ``_data`` (array fields) and ``_meta`` (static fields) and define ``edit``."""

    _data: tuple[str, ...] = ()
    _meta: tuple[str, ...] = ()

    def __init__(self, positions: Any = None, heads: Any = None, batch: Any = None, mask: Any = None):
        self.positions = _static(positions, "positions")
        self.heads = _static(heads, "heads")
        self.batch = _static(batch, "batch")
        self.mask = mask

    def __init_subclass__(cls, **kw: Any):
        super().__init_subclass__(**kw)
        jax.tree_util.register_pytree_node(cls, cls._flatten, cls._unflatten)

    # ---- pytree ---------------------------------------------------------------------------------
    def _flatten(self):
        data = tuple(getattr(self, f) for f in (*self._data, "mask"))
        meta = tuple(getattr(self, f) for f in (*self._meta, "positions", "heads", "batch"))
        return data, meta

    @classmethod
    def _unflatten(cls, meta, data):
        obj = object.__new__(cls)
        for f, v in zip((*cls._data, "mask"), data, strict=True):
            setattr(obj, f, v)
        for f, v in zip((*cls._meta, "positions", "heads", "batch"), meta, strict=True):
            setattr(obj, f, v)
        return obj

    # ---- application ----------------------------------------------------------------------------
    def __call__(self, x: jax.Array, ctx: SiteContext) -> jax.Array:
        new = jnp.asarray(self.edit(x, ctx), dtype=x.dtype)
        try:
            new = jnp.broadcast_to(new, x.shape)
        except ValueError:
            raise InterventionError(
                f"{type(self).__name__} at {ctx.name}: the value has shape {list(new.shape)} but the site has "
                f"shape {list(x.shape)}; give an array that broadcasts to it"
            ) from None
        gate = self._gate(x, ctx)
        if gate is None:
            return new
        return jnp.where(gate, new, x) if gate.dtype == jnp.bool_ else x + gate.astype(x.dtype) * (new - x)

    def _gate(self, x: jax.Array, ctx: SiteContext) -> jax.Array | None:
        d = dims(ctx.name)
        gate = None
        for key, sel in (("batch", self.batch), ("heads", self.heads), ("pos", self.positions)):
            if sel is None:
                continue
            axis = d.get(key)
            if axis is None or axis >= x.ndim:
                raise InterventionError(
                    f"{key}= needs a site with a {key} axis, which {ctx.name!r} (shape {list(x.shape)}) lacks"
                )
            n = x.shape[axis]
            hit = _pos_hits(sel, n, ctx) if key == "pos" else _index_hits(sel, n, key, ctx.name)
            shape = [1] * x.ndim
            shape[axis] = n
            hit = hit.reshape(shape)
            gate = hit if gate is None else gate & hit
        if self.mask is not None:
            m = jnp.asarray(self.mask)
            if m.ndim == 1 and x.ndim >= 2 and m.shape[0] == x.shape[d["pos"]] and d["pos"] != x.ndim - 1:
                shape = [1] * x.ndim
                shape[d["pos"]] = m.shape[0]
                m = m.reshape(shape)
            m = m.astype(x.dtype) if m.dtype != jnp.bool_ else m
            if gate is not None:
                m = gate & m if m.dtype == jnp.bool_ else gate.astype(x.dtype) * m
            gate = m
        return gate

    def edit(self, x: jax.Array, ctx: SiteContext) -> jax.Array:
        raise NotImplementedError

    def __repr__(self) -> str:
        sel = [
            f"{k}={getattr(self, k)!r}"
            for k in ("positions", "heads", "batch")
            if getattr(self, k) is not None
        ]
        return f"{type(self).__name__}({', '.join(sel)})"


def _index_hits(sel: tuple, n: int, what: str, site: str) -> jax.Array:
    idx = []
    for i in sel:
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise InterventionError(
                f"{what}={i} is out of range at {site}, which has {n} ({what} 0..{n - 1})"
            )
        idx.append(j)
    return jnp.zeros(n, bool).at[jnp.asarray(idx, jnp.int32)].set(True)


def _pos_hits(sel: tuple, n: int, ctx: SiteContext) -> jax.Array:
    """Which of this forward's ``n`` positions (absolute ``offset .. offset + n - 1``) are selected."""
    absolute = ctx.offset + jnp.arange(n)
    total = ctx.offset + n
    if sel[0] == "slice":
        start, stop, step = sel[1:]
        if isinstance(total, int):
            keep = set(range(*slice(start, stop, step).indices(total)))
            return jnp.asarray([p in keep for p in range(ctx.offset, total)])
        if step not in (None, 1):
            raise InterventionError("a position slice with a step needs a static offset")
        lo = 0 if start is None else (start + total if start < 0 else start)
        hi = total if stop is None else (stop + total if stop < 0 else stop)
        return (absolute >= lo) & (absolute < hi)
    hit = jnp.zeros(n, bool)
    for p in sel:
        if isinstance(total, int) and ctx.offset == 0 and not -total <= p < total:
            raise InterventionError(
                f"position {p} is out of range at {ctx.name}: the sequence has {total} tokens "
                f"(positions 0..{total - 1}, or -1..-{total})"
            )
        q = p + total if p < 0 else p
        hit = hit | (absolute == q)
    return hit


def _source(src: Any, ctx: SiteContext, what: str) -> Any:
    if isinstance(src, Mapping):
        if ctx.name not in src:
            raise InterventionError(
                f"{what} at {ctx.name}: the source cache has no entry for this site; cache it in the source run"
            )
        return src[ctx.name]
    return src


class Set(Intervention):
    """Replace the selected activations by ``value`` (broadcast to the site)."""

    _data = ("value",)

    def __init__(self, value: Any, **selectors: Any):
        super().__init__(**selectors)
        self.value = jnp.asarray(value)

    def edit(self, x, ctx):
        return self.value


class Patch(Intervention):
    """Copy activations from another run: ``source`` is a cache (dict site -> array) or an array with the
    site's shape (batch 1 broadcasts). ``jsi.run`` keeps only this site's entry of a cache."""

    _data = ("source",)

    def __init__(self, source: Any, **selectors: Any):
        super().__init__(**selectors)
        self.source = source

    def edit(self, x, ctx):
        return _source(self.source, ctx, "Patch")

    def for_site(self, name: str) -> Patch:
        if isinstance(self.source, Mapping):
            src = jnp.asarray(_source(self.source, SiteContext(name), "Patch"))
            return Patch(
                src, positions=_sel(self.positions), heads=self.heads, batch=self.batch, mask=self.mask
            )
        return self


class Add(Intervention):
    """Add ``scale * vector`` (broadcast over the site's last axis, or a full-site array)."""

    _data = ("vector", "scale")

    def __init__(self, vector: Any, scale: Any = 1.0, **selectors: Any):
        super().__init__(**selectors)
        self.vector = jnp.asarray(vector)
        self.scale = jnp.asarray(scale, jnp.float32)

    def edit(self, x, ctx):
        if self.vector.ndim == 1 and self.vector.shape[0] != x.shape[-1]:
            raise InterventionError(
                f"Add at {ctx.name}: the vector has size {self.vector.shape[0]} but the site's last axis has "
                f"size {x.shape[-1]}"
            )
        return x + self.scale * self.vector


class Scale(Intervention):
    """Multiply the selected activations by ``k``."""

    _data = ("k",)

    def __init__(self, k: Any, **selectors: Any):
        super().__init__(**selectors)
        self.k = jnp.asarray(k, jnp.float32)

    def edit(self, x, ctx):
        return x * self.k


class ProjectOut(Intervention):
    """Remove the component along ``direction`` (normalised) from the site's last axis."""

    _data = ("direction",)

    def __init__(self, direction: Any, **selectors: Any):
        super().__init__(**selectors)
        self.direction = jnp.asarray(direction)

    def edit(self, x, ctx):
        if self.direction.shape[-1] != x.shape[-1]:
            raise InterventionError(
                f"ProjectOut at {ctx.name}: the direction has size {self.direction.shape[-1]} but the site's "
                f"last axis has size {x.shape[-1]}"
            )
        d = self.direction / jnp.linalg.norm(self.direction)
        return x - (x @ d)[..., None] * d


class Ablate(Intervention):
    """``"zero"``: set to 0. ``"mean"``: the mean over batch and positions of ``source`` (a cache or an
    array), or of the activation itself without one. ``"resample"``: the activation of another batch row
    (a seeded permutation of the batch; needs a batch of at least 2)."""

    _data = ("source",)
    _meta = ("mode", "seed")

    def __init__(self, mode: str = "zero", source: Any = None, seed: int = 0, **selectors: Any):
        if mode not in ("zero", "mean", "resample"):
            raise InterventionError(f"Ablate mode must be 'zero', 'mean' or 'resample', not {mode!r}")
        super().__init__(**selectors)
        self.mode, self.source, self.seed = mode, source, int(seed)

    def edit(self, x, ctx):
        if self.mode == "zero":
            return jnp.zeros_like(x)
        src = x if self.source is None else jnp.asarray(_source(self.source, ctx, "Ablate"))
        d = dims(ctx.name)
        if self.mode == "mean":
            axes = tuple(a for a in (d["batch"], d["pos"]) if a < src.ndim)
            return jnp.mean(src, axis=axes, keepdims=True)
        b = d["batch"]
        if src.shape[b] < 2:
            raise InterventionError(f"Ablate('resample') at {ctx.name} needs a batch of at least 2 rows")
        perm = jax.random.permutation(jax.random.PRNGKey(self.seed), src.shape[b])
        perm = jnp.where(perm == jnp.arange(src.shape[b]), (perm + 1) % src.shape[b], perm)
        return jnp.take(src, perm, axis=b)

    def for_site(self, name: str) -> Ablate:
        if isinstance(self.source, Mapping):
            return Ablate(self.mode, jnp.asarray(_source(self.source, SiteContext(name), "Ablate")),
                          self.seed, positions=_sel(self.positions), heads=self.heads, batch=self.batch,
                          mask=self.mask)  # fmt: skip
        return self


class Fn(Intervention):
    """``fn(value, ctx) -> new value`` (``ctx.name``, ``ctx.offset``). The function is static: pass the same
    function object to reuse the compiled program; put arrays it needs in ``args`` (traced)."""

    _data = ("args",)
    _meta = ("fn",)

    def __init__(self, fn: Callable[..., Any], args: Any = (), **selectors: Any):
        if not callable(fn):
            raise InterventionError(f"Fn needs a callable fn(value, ctx), not {type(fn).__name__}")
        super().__init__(**selectors)
        self.fn, self.args = fn, args

    def edit(self, x, ctx):
        new = self.fn(x, ctx, *self.args) if self.args else self.fn(x, ctx)
        return x if new is None else new


def _sel(static: Any) -> Any:
    if static is not None and static[0] == "slice":
        return slice(*static[1:])
    return static


def as_intervention(obj: Any, site: str) -> Intervention:
    if isinstance(obj, Intervention):
        return obj.for_site(site) if hasattr(obj, "for_site") else obj
    if callable(obj):
        return Fn(obj)
    raise InterventionError(
        f"the intervention for {site!r} is a {type(obj).__name__}; use jsi.Set, Patch, Add, Ablate, Scale, "
        "ProjectOut or Fn (or a function fn(value, ctx))"
    )
