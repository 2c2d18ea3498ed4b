# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""Interventions: what to do to an activation at a site.

Each intervention is a small object with optional ``positions=``, ``heads=`` and ``batch=``
selectors. The engine calls ``intervention(value, ctx)`` inside a hook and uses what it returns.
Positions are absolute indices into the whole sequence (prompt plus generated tokens); negative
positions count from the end of the sequence seen so far, so ``positions=-1`` is the last token of
a run and, while generating, each newly generated token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import torch

from ._errors import InterventionError, PositionError, ShapeMismatchError

if TYPE_CHECKING:
    from ._site import Site

Positions = int | Sequence[int] | slice | torch.Tensor | None
Indices = int | Sequence[int] | torch.Tensor | None
# Where an edit applies: (an index tuple into the site's value, the absolute positions selected or None),
# or None for the whole value.
Where = tuple[tuple[torch.Tensor, ...], list[int] | None] | None


@dataclass
class HookContext:
    """What an intervention knows about the call it runs in."""

    site: Site
    offset: int = 0  # absolute position of the first token of this forward (KV-cache generation)
    generating: bool = False  # positions beyond the current sequence may still come
    step: int = 0  # how many times this site already ran in this scope
    # While generating: absolute positions that negative selectors chose in earlier steps, by
    # (intervention, site). They stay chosen, as they are with the KV cache, whose keys and values were
    # computed with the change; so a forward over the whole sequence (no cache) sees the same edits.
    chosen: dict[tuple[int, str], set[int]] | None = None

    @property
    def name(self) -> str:
        return self.site.name


def _shape(t: torch.Tensor | torch.Size | Sequence[int]) -> list[int]:
    return list(t.shape if torch.is_tensor(t) else t)


def _as_list(sel: Indices, size: int, what: str, site: str) -> list[int] | None:
    if sel is None:
        return None
    items = (
        [int(sel)]
        if isinstance(sel, int)
        else [int(x) for x in (sel.tolist() if torch.is_tensor(sel) else sel)]
    )
    out = []
    for i in items:
        j = i + size if i < 0 else i
        if not 0 <= j < size:
            raise InterventionError(
                f"{what}={i} is out of range at {site}, which has {size} {what} (0..{size - 1})"
            )
        out.append(j)
    return out


def _check_selector(sel: Any, what: str, site: str) -> None:
    """Raise ``PositionError``/``InterventionError`` unless ``sel`` is None, an int, a slice of ints, a sequence
    of ints or an integer tensor."""
    error = PositionError if what == "positions" else InterventionError
    if sel is None or (isinstance(sel, int) and not isinstance(sel, bool)):
        return
    if isinstance(sel, slice):
        if what == "positions" and all(
            v is None or (isinstance(v, int) and not isinstance(v, bool))
            for v in (sel.start, sel.stop, sel.step)
        ):
            return
        raise error(f"{what}={sel!r} at {site}: a slice needs integer bounds, e.g. slice(2, None)")
    if torch.is_tensor(sel):
        if sel.dtype.is_floating_point or sel.is_complex() or sel.dtype == torch.bool or sel.ndim > 1:
            raise error(
                f"{what} at {site} is a {sel.dtype} tensor of shape {list(sel.shape)}; give a 1-d integer tensor"
            )
        return
    if isinstance(sel, Sequence) and not isinstance(sel, (str, bytes)):
        bad = [x for x in sel if not isinstance(x, int) or isinstance(x, bool)]
        if not bad:
            return
        raise error(f"{what} at {site} contains {bad[0]!r}; give integers, e.g. {what}=[0, 3]")
    raise error(f"{what}={sel!r} at {site} is a {type(sel).__name__}; give an int or a list of ints")


def _check_value(value: Any, what: str, site: str) -> None:
    """Raise ``InterventionError`` when ``value`` is a tensor without data (on the meta device)."""
    if torch.is_tensor(value) and value.device.type == "meta":
        raise InterventionError(
            f"{what} at {site}: the value is on the meta device, so it holds no data; give a tensor on a real "
            "device (materialise it, e.g. with torch.randn(..., device='cpu'))"
        )


class Intervention:
    """Base class. Subclasses implement ``edit(region, ctx, full)``."""

    needs_offset = False  # whether the engine must track the absolute position offset

    def __init__(self, positions: Positions = None, heads: Indices = None, batch: Indices = None):
        self.positions = positions
        self.heads = heads
        self.batch = batch
        if positions is not None:
            self.needs_offset = True

    def check(self, site: str) -> None:
        """Validate the selectors and values before any forward runs, naming ``site`` in the error."""
        for what in ("positions", "heads", "batch"):
            _check_selector(getattr(self, what), what, site)
        for attr in ("value", "vector", "direction", "source"):
            _check_value(getattr(self, attr, None), type(self).__name__, site)

    # -- selectors -------------------------------------------------------------------------------
    def _select(
        self, value: torch.Tensor, ctx: HookContext
    ) -> tuple[tuple[torch.Tensor, ...], list[int] | None] | tuple[None, None] | Literal[False]:
        """Return ``(local_index, abs_positions)``; ``local_index`` None means the whole tensor, and
        ``abs_positions`` None means all positions of this forward. Returns ``False`` when the
        selected positions are not in this forward (generation will reach them later)."""
        site = ctx.site
        sel: dict[int, list[int]] = {}
        abs_pos = None
        if self.batch is not None:
            bdim = site.dim("batch", value.ndim)
            if bdim is None:
                raise InterventionError(f"batch= needs a site with a batch dimension, not {site.name!r}")
            sel[bdim] = _as_list(self.batch, value.shape[bdim], "batch", site.name)  # type: ignore[index]
        if self.heads is not None:
            hdim = site.dim("n_heads", value.ndim)
            if hdim is None:
                raise InterventionError(
                    f"heads= needs a site with a head dimension (blocks.N.attn.z or attn.pattern), not {site.name!r}"
                )
            sel[hdim] = _as_list(self.heads, value.shape[hdim], "heads", site.name)  # type: ignore[assignment]
        if self.positions is not None:
            pdim = site.dim("pos", value.ndim)
            if pdim is None:
                raise InterventionError(
                    f"positions= needs a site with a position dimension, not {site.name!r}"
                )
            abs_pos = self._positions(value.shape[pdim], ctx)
            local = [p - ctx.offset for p in abs_pos if ctx.offset <= p < ctx.offset + value.shape[pdim]]
            if not local:
                return False
            abs_pos = [p + ctx.offset for p in local]
            sel[pdim] = local
        if not sel:
            return None, None
        last = max(sel)
        index = []
        for d in range(last + 1):
            idx = sel.get(d)
            t = torch.arange(value.shape[d]) if idx is None else torch.tensor(idx)
            shape = [1] * (last + 1)
            shape[d] = -1
            index.append(t.view(shape).to(value.device))
        return tuple(index), abs_pos

    def _positions(self, n_local: int, ctx: HookContext) -> list[int]:
        total = ctx.offset + n_local
        pos = self.positions
        if isinstance(pos, slice):
            return list(range(*pos.indices(total)))
        items = (
            [int(pos)]
            if isinstance(pos, int)
            else [int(p) for p in (pos.tolist() if isinstance(pos, torch.Tensor) else pos or [])]
        )
        out: list[int] = []
        for p in items:
            q = p + total if p < 0 else p
            if q < 0 or (q >= total and not ctx.generating):
                raise PositionError(
                    f"position {p} is out of range at {ctx.site.name}: the sequence has {total} tokens "
                    f"(positions 0..{total - 1}, or -1..-{total})"
                )
            out.append(q)
        if ctx.chosen is not None and any(p < 0 for p in items):
            earlier = ctx.chosen.setdefault((id(self), ctx.name), set())
            earlier.update(q for p, q in zip(items, out, strict=True) if p < 0)
            return sorted(earlier | set(out))
        return out

    # -- application -----------------------------------------------------------------------------
    def __call__(self, value: torch.Tensor, ctx: HookContext) -> torch.Tensor:
        chosen = self._select(value, ctx)
        if chosen is False:
            return value
        index, abs_pos = chosen
        if index is None:
            new = self.edit(value, ctx, value, None)
            return value if new is None else self._fit(new, value, ctx)
        region = value[index]
        new = self.edit(region, ctx, value, (index, abs_pos))
        if new is None:
            new = region
        new = self._fit(new, region, ctx)
        out = value.clone()
        out[index] = new
        return out

    def edit(
        self, region: torch.Tensor, ctx: HookContext, full: torch.Tensor, where: Where
    ) -> torch.Tensor | None:
        raise NotImplementedError

    def _fit(self, new: torch.Tensor, like: torch.Tensor, ctx: HookContext) -> torch.Tensor:
        if new.shape != like.shape:
            try:
                shape = torch.broadcast_shapes(new.shape, like.shape)
            except RuntimeError:
                shape = None
            if shape != like.shape:
                raise ShapeMismatchError(
                    f"{type(self).__name__} at {ctx.name}: the value has shape {_shape(new)} but the site "
                    f"(after selectors) has shape {_shape(like)}; give a tensor that broadcasts to it"
                )
            new = new.expand(like.shape)
        if new.dtype != like.dtype or new.device != like.device:
            if new.is_floating_point() != like.is_floating_point():
                raise ShapeMismatchError(
                    f"{type(self).__name__} at {ctx.name}: the value has dtype {new.dtype} but the site has "
                    f"dtype {like.dtype}; give a floating-point tensor"
                )
            new = new.to(device=like.device, dtype=like.dtype)
        return new

    def _tag(self) -> str:
        sel = [
            f"{k}={v!r}"
            for k, v in (("positions", self.positions), ("heads", self.heads), ("batch", self.batch))
            if v is not None
        ]
        return ", ".join(sel)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._tag()})"


def _source_tensor(source: Any, ctx: HookContext, what: str) -> torch.Tensor:
    """The source activation for this site: a tensor, or the entry of a cache for this site's name."""
    if torch.is_tensor(source):
        _check_value(source, what, ctx.name)
        return source
    if isinstance(source, Mapping):
        if ctx.name not in source:
            raise InterventionError(
                f"{what} at {ctx.name}: the source cache has no entry for this site; cache it in the source run "
                f"(cache=[{ctx.name!r}, ...])"
            )
        return _source_tensor(source[ctx.name], ctx, what)
    if hasattr(source, "cache"):  # a RunResult
        return _source_tensor(source.cache, ctx, what)
    raise InterventionError(
        f"{what} at {ctx.name}: the source must be a tensor or a cache, not {type(source).__name__}"
    )


def _aligned_source(
    src: torch.Tensor, full: torch.Tensor, ctx: HookContext, where: Where, what: str
) -> torch.Tensor:
    """Index ``src`` (the source activation, full sequence) like the region of ``full`` being edited."""
    site = ctx.site
    pdim = site.dim("pos", full.ndim)
    bdim = site.dim("batch", full.ndim)
    problem = src.ndim != full.ndim
    if not problem:
        for d in range(full.ndim):
            if d == bdim and src.shape[d] == 1:
                continue
            if d == pdim:
                continue
            problem |= src.shape[d] != full.shape[d]
    if not problem and pdim is not None:
        need = ctx.offset + full.shape[pdim]
        if where is not None and where[1] is not None:
            need = max(where[1]) + 1
            problem = src.shape[pdim] < need
        else:
            problem = src.shape[pdim] != need if ctx.offset == 0 else src.shape[pdim] < need
    if problem:
        raise ShapeMismatchError(
            f"{what} at {ctx.name}: the source has shape {_shape(src)} but the site has shape {_shape(full)}"
            + ("" if ctx.offset == 0 else f" at offset {ctx.offset}")
            + "; use prompts of the same length, or positions= to patch only some positions"
        )
    if bdim is not None and src.shape[bdim] == 1 and full.shape[bdim] != 1:
        src = src.expand(*[full.shape[d] if d == bdim else -1 for d in range(src.ndim)])
    if pdim is not None and (where is None or where[1] is None):
        if src.shape[pdim] != full.shape[pdim]:
            src = src.narrow(pdim, ctx.offset, full.shape[pdim])
    if where is None:
        return src
    index, abs_pos = where
    if abs_pos is not None and pdim is not None:
        index = list(index)
        index[pdim] = torch.tensor(abs_pos, device=index[pdim].device).view(index[pdim].shape)
        index = tuple(index)
    return src.to(full.device)[index]


# ---------------------------------------------------------------------------------------------------
class Set(Intervention):
    """Replace the selected activations by ``value`` (broadcast; a full-site tensor is indexed like the site)."""

    def __init__(self, value: torch.Tensor, **selectors: Any):
        super().__init__(**selectors)
        self.value = torch.as_tensor(value)

    def edit(
        self, region: torch.Tensor, ctx: HookContext, full: torch.Tensor, where: Where
    ) -> torch.Tensor | None:
        if where is not None and self.value.shape == full.shape:
            return self.value.to(full.device)[where[0]]
        return self.value


class Patch(Intervention):
    """Copy activations from another run: ``source`` is a cache (or RunResult) holding this site, or a tensor
    with the site's full shape. Batch size 1 broadcasts over the batch."""

    needs_offset = True

    def __init__(self, source: Any, **selectors: Any):
        super().__init__(**selectors)
        self.source = source

    def edit(
        self, region: torch.Tensor, ctx: HookContext, full: torch.Tensor, where: Where
    ) -> torch.Tensor | None:
        src = _source_tensor(self.source, ctx, "Patch")
        return _aligned_source(src, full, ctx, where, "Patch")


class Add(Intervention):
    """Add ``scale * vector`` (a steering vector of size d_model, or anything that broadcasts)."""

    def __init__(self, vector: torch.Tensor, scale: float = 1.0, **selectors: Any):
        super().__init__(**selectors)
        self.vector = torch.as_tensor(vector)
        self.scale = float(scale)
        self._moved: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def edit(
        self, region: torch.Tensor, ctx: HookContext, full: torch.Tensor, where: Where
    ) -> torch.Tensor | None:
        key = (region.device, region.dtype)
        vec = self._moved.get(key)
        if vec is None:
            if self.vector.shape[-1:] != region.shape[-1:] and self.vector.ndim > 0:
                raise ShapeMismatchError(
                    f"Add at {ctx.name}: the vector has shape {_shape(self.vector)} but the site's last dimension "
                    f"is {region.shape[-1]}; give a vector of size {region.shape[-1]}"
                )
            vec = self._moved[key] = self.vector.to(device=region.device, dtype=region.dtype) * self.scale
        return region + vec


class Scale(Intervention):
    """Multiply the selected activations by ``k``."""

    def __init__(self, k: float, **selectors: Any):
        super().__init__(**selectors)
        self.k = k

    def edit(
        self, region: torch.Tensor, ctx: HookContext, full: torch.Tensor, where: Where
    ) -> torch.Tensor | None:
        return region * self.k


class ProjectOut(Intervention):
    """Remove the component along ``direction`` (normalised here): ``x - (x . d) d``."""

    def __init__(self, direction: torch.Tensor, **selectors: Any):
        super().__init__(**selectors)
        direction = torch.as_tensor(direction, dtype=torch.float32)
        norm = direction.norm()
        if norm == 0:
            raise InterventionError("ProjectOut needs a non-zero direction")
        self.direction = direction / norm

    def edit(
        self, region: torch.Tensor, ctx: HookContext, full: torch.Tensor, where: Where
    ) -> torch.Tensor | None:
        if self.direction.shape[-1] != region.shape[-1]:
            raise ShapeMismatchError(
                f"ProjectOut at {ctx.name}: the direction has size {self.direction.shape[-1]} but the site's last "
                f"dimension is {region.shape[-1]}"
            )
        d = self.direction.to(device=region.device, dtype=region.dtype)
        return region - (region @ d).unsqueeze(-1) * d


class Ablate(Intervention):
    """Knock out activations: ``"zero"``; ``"mean"`` (over batch and positions of ``source``, by default of
    this run); ``"resample"`` (each batch row takes another row of ``source``, by default of this batch)."""

    MODES = ("zero", "mean", "resample")

    def __init__(self, mode: str = "zero", source: Any = None, seed: int | None = 0, **selectors: Any):
        super().__init__(**selectors)
        if mode not in self.MODES:
            raise InterventionError(
                f"Ablate mode {mode!r} is unknown; use one of {', '.join(map(repr, self.MODES))}"
            )
        self.mode = mode
        self.source = source
        self.seed = seed
        if mode == "resample" and source is not None:
            self.needs_offset = True

    def edit(
        self, region: torch.Tensor, ctx: HookContext, full: torch.Tensor, where: Where
    ) -> torch.Tensor | None:
        if self.mode == "zero":
            return torch.zeros_like(region)
        src = full if self.source is None else _source_tensor(self.source, ctx, "Ablate")
        site = ctx.site
        if self.mode == "mean":
            dims = [d for d in (site.dim(k, src.ndim) for k in ("batch", "pos", "tokens")) if d is not None]
            mean = src.to(full.device, full.dtype).mean(dim=dims, keepdim=True).expand(full.shape)
            return mean if where is None else mean[where[0]]
        # resample
        bdim = site.dim("batch", full.ndim) or 0
        gen = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        n = full.shape[bdim]
        if self.source is None:
            if n < 2:
                raise InterventionError(
                    f"Ablate('resample') at {ctx.name} needs a batch of at least 2 rows or a source=cache to draw from"
                )
            rows = (
                torch.arange(n) + torch.randint(1, n, (1,), generator=gen)
            ) % n  # a shift: never a row's own
            shuffled = full.index_select(bdim, rows.to(full.device))
        else:
            rows = torch.randint(src.shape[bdim], (n,), generator=gen)
            picked = src.index_select(bdim, rows.to(src.device))
            if where is not None:  # the selected region, read at its absolute positions in the source
                return _aligned_source(picked, full, ctx, where, "Ablate")
            shuffled = _aligned_source(picked, full, ctx, None, "Ablate")
        return shuffled if where is None else shuffled[where[0]]

    def __repr__(self) -> str:
        tag = self._tag()
        return f"Ablate({self.mode!r}{', ' + tag if tag else ''})"


class Fn(Intervention):
    """Call ``fn(value, ctx)``; it returns the new value, or None after changing ``value`` in place. With
    selectors, ``value`` is the selected region."""

    def __init__(self, fn: Callable[[torch.Tensor, HookContext], torch.Tensor | None], **selectors: Any):
        super().__init__(**selectors)
        if not callable(fn):
            raise InterventionError(f"Fn needs a callable (value, ctx) -> tensor, not {type(fn).__name__}")
        self.fn = fn

    def edit(
        self, region: torch.Tensor, ctx: HookContext, full: torch.Tensor, where: Where
    ) -> torch.Tensor | None:
        new = self.fn(region, ctx)
        if new is not None and not torch.is_tensor(new):
            raise InterventionError(
                f"Fn at {ctx.name} returned a {type(new).__name__}; return a tensor shaped like its input "
                "(or None after changing the value in place)"
            )
        return new


def as_intervention(obj: Any, site_name: str) -> Intervention:
    if isinstance(obj, Intervention):
        return obj
    if callable(obj):
        return Fn(cast("Callable[[torch.Tensor, HookContext], torch.Tensor | None]", obj))
    raise InterventionError(
        f"the intervention for {site_name!r} is a {type(obj).__name__}; use tsi.Set, Patch, Add, Ablate, Scale, "
        "ProjectOut or Fn (or a function (value, ctx) -> value)"
    )
