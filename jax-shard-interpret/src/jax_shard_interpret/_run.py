"""``out, cache = jsi.run(model, inputs, cache=..., interventions=...)``: pure, jit-compiled per structure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import InputError, ModelError
from ._hooks import SitePlan, Trace, traced_call
from ._interventions import as_intervention
from ._model import Model, wrap
from ._sites import natural_key, select


class Cache(dict):
    """Site name -> array (a pytree, so it passes through jit and vmap). ``stack(glob)`` stacks in order."""

    def stack(self, pattern: str) -> jax.Array:
        names = sorted(select(pattern, list(self)), key=natural_key)
        return jnp.stack([self[n] for n in names])

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(select(pattern, list(self)), key=natural_key) if self else []


jax.tree_util.register_pytree_node(
    Cache,
    lambda c: (tuple(c[k] for k in sorted(c)), tuple(sorted(c))),
    lambda keys, vals: Cache(zip(keys, vals, strict=True)),
)


def _split(module: Any, backend: str) -> tuple[Any, Any]:
    """(hashable static part, pytree of arrays) of a module; ``_merge`` undoes it."""
    if backend == "nnx":
        from flax import nnx

        graphdef, state = nnx.split(module)
        return ("nnx", graphdef), state
    leaves, treedef = jax.tree_util.tree_flatten(module)
    is_arr = tuple(isinstance(x, (jax.Array, np.ndarray)) for x in leaves)
    static = tuple(None if a else x for x, a in zip(leaves, is_arr, strict=True))
    try:
        hash(static)
    except TypeError:
        raise ModelError(
            "the Equinox module has an unhashable non-array leaf; mark it eqx.field(static=True)"
        ) from None
    return ("eqx", treedef, static, is_arr), [x for x, a in zip(leaves, is_arr, strict=True) if a]


def _merge(static: Any, dynamic: Any) -> Any:
    if static[0] == "nnx":
        from flax import nnx

        return nnx.merge(static[1], dynamic)
    _, treedef, leaves, is_arr = static
    it = iter(dynamic)
    return jax.tree_util.tree_unflatten(
        treedef, [next(it) if a else x for x, a in zip(leaves, is_arr, strict=True)]
    )


def _forward(static, plan, static_offset, dynamic, inputs, ivs, offset, kwargs):
    module = _merge(static, dynamic)
    plans: dict[tuple[str, str], SitePlan] = {}
    for path, side, name, view, keep in plan:
        plans.setdefault((path, side), SitePlan([])).entries.append((name, view, ivs.get(name, []), keep))
    trace = Trace(plans, static_offset if offset is None else offset)
    out = traced_call(module, static[0], trace, lambda m: m(inputs, **kwargs))
    unseen = sorted({n for p, s, n, _, _ in plan if (p, s) not in trace.seen})
    if unseen:
        raise ModelError(f"the forward never reached the site(s) {unseen}; their modules were not called")
    return out, Cache(trace.cache)


_jitted = jax.jit(_forward, static_argnums=(0, 1, 2))


def prepare_inputs(model: Model, inputs: Any) -> Any:
    if isinstance(inputs, str) or (isinstance(inputs, Sequence) and inputs and isinstance(inputs[0], str)):
        return jnp.asarray(model.tokenize(inputs))
    if isinstance(inputs, np.ndarray):
        return jnp.asarray(inputs)
    return inputs


def plan_for(model: Model, cache: Any, interventions: Mapping[str, Any] | None):
    """(static plan, dict site -> [intervention]) of a run."""
    keep = select(cache, model.sites()) if cache is not None else []
    ivs: dict[str, list[Any]] = {}
    if interventions:
        if not isinstance(interventions, Mapping):
            raise InputError("interventions must be a dict site name -> intervention (or list of them)")
        for pat, obj in interventions.items():
            for name in select(pat, model.sites()):
                objs = obj if isinstance(obj, (list, tuple)) else [obj]
                ivs.setdefault(name, []).extend(as_intervention(o, name) for o in objs)
    plan = []
    for name in dict.fromkeys([*ivs, *keep]):
        path, side, view = model.resolve(name)
        plan.append((path, side, name, view, name in keep))
    return tuple(plan), ivs


def run(
    model: Any,
    inputs: Any,
    *,
    cache: str | Sequence[str] | None = None,
    interventions: Mapping[str, Any] | None = None,
    offset: Any = 0,
    kwargs: Mapping[str, Any] | None = None,
    jit: bool = True,
) -> tuple[Any, Cache]:
    """Run ``model`` on ``inputs`` (an array, a pytree, or text when the model has a tokenizer).

    Args:
        model: a ``jsi.Model`` or any Flax NNX / Equinox module.
        cache: site names or globs whose values (after interventions) are returned in ``cache``.
        interventions: dict site name (or glob) -> intervention or list of interventions.
        offset: absolute position of the first input token (KV-cache generation); an int or a traced scalar.
        kwargs: extra keyword arguments of the module's call (arrays are traced).
        jit: compile (once per structure: model graph, sites, intervention kinds and selectors, shapes).

    Returns:
        ``(out, cache)``: the module's output and a ``jsi.Cache`` (dict site -> array). Pure: the module is
        not changed, so ``jax.jit``, ``jax.vmap`` and ``jax.grad`` of a function calling ``run`` work.
    """
    model = wrap(model)
    inputs = prepare_inputs(model, inputs)
    plan, ivs = plan_for(model, cache, interventions)
    static, dynamic = _split(model.module, model.backend)
    static_offset, dyn_offset = (offset, None) if isinstance(offset, int) else (0, jnp.asarray(offset))
    fn = _jitted if jit else _forward
    return fn(static, plan, static_offset, dynamic, inputs, ivs, dyn_offset, dict(kwargs or {}))
