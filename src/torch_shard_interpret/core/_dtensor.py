# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""Tensor-parallel activations: show intervention code the full tensor, hand the model back its own layout.

A module run under tensor parallelism sees activations in one of two forms:

- a DTensor (``torch.distributed.tensor.parallel``: the input of a row-wise parallel projection is a
  DTensor sharded over its last dimension once the TP input pre-hook has run);
- a plain tensor holding this rank's slice of the features (the output of a column-wise layer with
  ``use_local_output=True``, and every activation between a column-wise and a row-wise layer in
  Hugging Face's ``tp_plan``, which swaps ``module.forward`` instead of using hooks).

Hooks gather either to a full tensor (the same on every rank) and give back the changed value in the
original layout. Giving it back needs no communication (every rank holds the same full value), and
keeps the autograd graph when the value requires grad.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeGuard, cast

import torch

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor, Shard

Restore = Callable[[torch.Tensor], torch.Tensor]


def is_dtensor(value: Any) -> TypeGuard[DTensor]:
    return type(value).__name__ == "DTensor"


def _to_layout(new: torch.Tensor, mesh: Any, placements: Any) -> torch.Tensor:
    """The DTensor laid out by ``placements`` whose full value is ``new`` (the same on every rank).

    Taking this rank's piece needs no communication. It stays in the autograd graph: each rank's
    downstream sees only its own piece, so the backward all-gathers the pieces' gradients and every rank
    gets the gradient of the whole value (``distribute_tensor`` would detach). A pending sum (Partial) is
    a known full value now: Replicate."""
    from torch.distributed.tensor import DTensor, Replicate

    kept = [p if p.is_shard() else Replicate() for p in placements]
    whole = DTensor.from_local(new, mesh, [Replicate()] * mesh.ndim, run_check=False)
    return whole.redistribute(mesh, kept)


def unshard(value: Any) -> tuple[torch.Tensor, Restore]:
    """``(full_tensor, restore)`` where ``restore(new_full)`` gives a DTensor laid out like ``value``."""
    mesh, placements = value.device_mesh, value.placements
    full = value.full_tensor()

    def restore(new: torch.Tensor) -> torch.Tensor:
        return _to_layout(new, mesh, placements)

    return full, restore


def _feature_shard(module: Any, kind: str, width: int) -> tuple[Any, int] | None:
    """``(mesh, full_width)`` when a plain value of last dimension ``width`` at a linear layer's input (row-wise:
    weight ``Shard(1)``) or output (column-wise: weight ``Shard(0)``) is this rank's slice of its features."""
    weight: Any = getattr(module, "weight", None)
    features = getattr(module, "in_features" if kind == "input" else "out_features", None)
    if (
        not isinstance(features, int)
        or not is_dtensor(weight)
        or weight.ndim != 2
        or weight.device_mesh.ndim != 1
    ):
        return None
    if "FSDP" in type(module).__name__:  # fully_shard: parameters are sharded, activations are not
        return None
    placement = weight.placements[0]
    if not placement.is_shard():
        return None
    dim = cast("Shard", placement).dim % 2  # torch types is_shard() as a bool, not a TypeGuard
    if (kind, dim) not in (("input", 1), ("output", 0)):
        return None
    local = weight.to_local().shape[dim]
    if width != local or width == features:
        return None
    return weight.device_mesh, features


def unshard_local(site: Any, value: torch.Tensor) -> tuple[torch.Tensor, Restore] | None:
    """For a plain ``value`` that is this rank's feature slice of a tensor-parallel layer's input or output:
    ``(full_tensor, restore)`` where ``restore(new_full)`` gives this rank's slice back. Otherwise None."""
    if site.view is not None or site.kind == "scores":
        return None  # views and scores are shown as the module computes them on this rank
    heads = site.n_heads
    flat = value.flatten(-2) if heads is not None else value  # undo the site's [n_heads, d_head] view
    if flat.ndim == 0:
        return None
    found = _feature_shard(site.module, site.kind, flat.shape[-1])
    if found is None:
        return None
    from torch.distributed.tensor import DTensor, Shard

    mesh, width = found
    placements = [Shard(flat.ndim - 1)]
    shape = torch.Size((*flat.shape[:-1], width))
    stride = torch.empty(shape, device="meta").stride()
    full = DTensor.from_local(
        flat, mesh, placements, run_check=False, shape=shape, stride=stride
    ).full_tensor()
    if heads is not None:
        full = full.unflatten(-1, (heads, -1))

    def restore(new: torch.Tensor) -> torch.Tensor:
        if heads is not None:
            new = new.flatten(-2)
        local: torch.Tensor = cast(Any, _to_layout(new, mesh, placements)).to_local()
        # Site.put flattens the last two dimensions of a head site again.
        return local.unflatten(-1, (1, -1)) if heads is not None else local

    return full, restore
