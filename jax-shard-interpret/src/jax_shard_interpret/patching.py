"""Activation patching as a vmap over patches, and attribution patching with ``jax.grad``.

``activation_patching`` runs the base prompt with a ``jsi.Patch`` at every site, each gated by a
traced mask; one program is compiled and ``jax.vmap`` runs a chunk of cells (one cell = one site and one
position) at once. ``attribution_patching`` takes the gradient of the metric with respect to a zero
``jsi.Add`` at each site and estimates each cell as ``(source - base) . grad``. Both return
``PatchResult`` with ``tsi``'s fields and normalisation: ``effects = (patched - baseline) / (target -
baseline)``; denoising (the default) runs corrupt and patches clean in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import InputError
from ._interventions import Add, Patch
from ._model import Model, wrap
from ._run import run
from ._sites import dims, natural_key, select


@dataclass
class PatchResult:
    effects: np.ndarray
    """``[n_sites, n_positions]`` normalised effects."""
    raw: np.ndarray
    sites: list[str]
    positions: list[list[int]]
    clean_metric: float
    corrupt_metric: float
    direction: str = "denoise"
    method: str = "activation"
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"effects": self.effects.tolist(), "raw": self.raw.tolist(), "sites": self.sites,
                "positions": self.positions, "clean_metric": self.clean_metric,
                "corrupt_metric": self.corrupt_metric, "direction": self.direction, "method": self.method}  # fmt: skip


def _setup(model: Model, clean: Any, corrupt: Any, metric: Callable, sites: Any, direction: str):
    if direction not in ("denoise", "noise"):
        raise InputError(f"direction must be 'denoise' or 'noise', not {direction!r}")
    ids = [
        jnp.asarray(model.tokenize(p)) if isinstance(p, str) else jnp.atleast_2d(jnp.asarray(p))
        for p in (clean, corrupt)
    ]
    if ids[0].shape != ids[1].shape:
        raise InputError(
            f"the clean and corrupt prompts have {ids[0].shape[1]} and {ids[1].shape[1]} tokens; give equal lengths"
        )
    names = sorted(select(sites, model.sites()), key=natural_key)
    for n in names:
        if dims(n)["pos"] != 1:
            raise InputError(f"patching by position needs [batch, pos, ...] sites, not {n!r}")
    (lc, cc), (lx, cx) = (run(model, i, cache=names) for i in ids)
    clean_m, corrupt_m = float(metric(lc)[0]), float(metric(lx)[0])
    if direction == "denoise":
        return names, ids[1], cx, cc, corrupt_m, clean_m, clean_m, corrupt_m
    return names, ids[0], cc, cx, clean_m, corrupt_m, clean_m, corrupt_m


def _scale(normalize: bool, baseline: float, target: float) -> float:
    if not normalize:
        return 1.0
    if abs(target - baseline) < 1e-12:
        raise InputError(
            f"the clean and corrupt prompts give the same metric ({target:.6g}), so the normalised effect is "
            "undefined; choose prompts that differ on the metric, or pass normalize=False"
        )
    return target - baseline


def activation_patching(
    model: Any, clean: Any, corrupt: Any, metric: Callable[[jax.Array], jax.Array], sites: Any = "blocks.*.resid_pre",
    direction: str = "denoise", chunk: int = 16, normalize: bool = True, vmap: bool = True,
) -> PatchResult:  # fmt: skip
    """Patch one (site, position) cell at a time; ``vmap=False`` loops in Python instead (same numbers)."""
    model = wrap(model)
    names, base_ids, base_cache, src, base_m, target_m, clean_m, corrupt_m = _setup(
        model, clean, corrupt, metric, sites, direction
    )
    n_pos = base_ids.shape[1]
    cells = [(i, j) for i in range(len(names)) for j in range(n_pos)]
    sources = {n: src[n] for n in names}

    def one(masks: jax.Array) -> jax.Array:  # masks [n_sites, pos]
        ivs = {n: Patch(sources[n], mask=masks[k]) for k, n in enumerate(names)}
        return metric(run(model, base_ids, interventions=ivs)[0])[0]

    masks = np.zeros((len(cells), len(names), n_pos), np.float32)
    for c, (i, j) in enumerate(cells):
        masks[c, i, j] = 1.0
    values = []
    if vmap:
        batched = jax.jit(jax.vmap(one))
        pad = (-len(cells)) % chunk
        m = np.concatenate([masks, np.zeros((pad, *masks.shape[1:]), np.float32)])
        for a in range(0, len(m), chunk):
            values.append(np.asarray(batched(jnp.asarray(m[a : a + chunk]))))
        values = np.concatenate(values)[: len(cells)]
    else:
        single = jax.jit(one)
        values = np.asarray([float(single(jnp.asarray(masks[c]))) for c in range(len(cells))])
    raw = (values - base_m).reshape(len(names), n_pos)
    return PatchResult(raw / _scale(normalize, base_m, target_m), raw, names, [[j] for j in range(n_pos)],
                       clean_m, corrupt_m, direction, "activation", {"cells": len(cells), "chunk": chunk})  # fmt: skip


def attribution_patching(
    model: Any, clean: Any, corrupt: Any, metric: Callable[[jax.Array], jax.Array], sites: Any = "blocks.*.resid_pre",
    direction: str = "denoise", normalize: bool = True,
) -> PatchResult:  # fmt: skip
    """First-order estimate of ``activation_patching``: ``(source - base) . d metric / d activation``."""
    model = wrap(model)
    names, base_ids, base_cache, src, base_m, target_m, clean_m, corrupt_m = _setup(
        model, clean, corrupt, metric, sites, direction
    )

    def f(deltas: dict[str, jax.Array]) -> jax.Array:
        return metric(run(model, base_ids, interventions={n: Add(deltas[n]) for n in names})[0])[0]

    grads = jax.grad(f)({n: jnp.zeros_like(base_cache[n]) for n in names})
    raw = np.stack(
        [
            np.asarray(((src[n] - base_cache[n]) * grads[n])[0].reshape(base_ids.shape[1], -1).sum(-1))
            for n in names
        ]
    )
    return PatchResult(raw / _scale(normalize, base_m, target_m), raw, names, [[j] for j in range(base_ids.shape[1])],
                       clean_m, corrupt_m, direction, "attribution")  # fmt: skip
