"""Training: ``tsi.sae.train`` (a store, a tensor, or a model and texts) and ``tsi.sae.train_on_model``.

Each setting has one way in: what the SAE is goes in ``sae_config`` (an ``SAEConfig``, or a dict of its
fields, with ``d_in``/``d_out`` read from the data), how it is trained in ``train_config`` (a ``TrainConfig``
or a dict of its fields), and where the data is read in ``site``. The loop is one ``Trainer.step(x, y)`` per
global batch (``_trainer.py``); batches come from the sources of ``_sources.py`` by step number, so a resumed
run sees exactly the batches an uninterrupted one would. Checkpoints (``_checkpoint.py``) are safetensors +
JSON, never pickles. Under ``torchrun`` every rank reads the same global batch and trains data-parallel.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence, Sized
from pathlib import Path
from typing import Any

import torch

from .._progress import progress as bar_of
from ..core._model import Model
from . import _checkpoint
from ._config import (
    FEW_STEPS,
    MIN_TENSOR_STEPS,
    MIN_TENSOR_STEPS_BY_KIND,
    SAEConfig,
    SAEError,
    SAEWarning,
    TrainConfig,
)
from ._sae import SAE
from ._sources import BatchStore, ModelStream, SharedSource, StoreSource, TensorSource
from ._trainer import Dist, Trainer

Callback = Callable[[int, dict[str, float]], None]
_SAE_FIELDS = {f.name for f in dataclasses.fields(SAEConfig)}
_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


DEFAULT_D_SAE = 4096
"""Latents of an SAE whose config does not say (``tsi train-sae --d-sae``'s default too)."""


# ---- the public entry points ---------------------------------------------------------------------


def train(
    source: Any,
    sae_config: SAEConfig | Mapping[str, Any] | None = None,
    train_config: TrainConfig | Mapping[str, Any] | None = None,
    *,
    site: str | Sequence[str] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callback | None = None,
) -> SAE:
    """Train one SAE (or transcoder) and return it in eval mode.

    ``source``: an activation store (anything with ``.batches(site, batch_size, shuffle, seed)``), an
    ``[n, d_in]`` tensor, a pair of tensors ``(inputs, targets)`` for a transcoder, or ``(model, texts)`` for
    on-the-fly training from hooks (see ``train_on_model``).
    ``sae_config``: an ``SAEConfig``, or a dict of its fields (``{"kind": "topk", "d_sae": 4096, "k": 32}``,
    the defaults); ``d_in``, ``d_out`` and the hook names come from the data.
    ``train_config``: a ``TrainConfig`` or a dict of its fields (``{"steps": 2000, "batch_size": 1024}``).
    ``site``: the store's (or model's) site; a pair ``(in_site, out_site)`` trains a transcoder.
    ``checkpoint_dir``: write a checkpoint every ``train_config.checkpoint_every`` steps (safetensors + JSON);
    ``resume=True`` continues from it with the same final weights as an uninterrupted run.
    ``callback(step, metrics)`` runs after each step (after that step's checkpoint). Under ``torchrun``
    (``WORLD_SIZE`` > 1) it trains data-parallel. Warns (``SAEWarning``) when the run is too short to be
    useful or the result reconstructs worse than the mean.
    """
    tcfg = _train_config(train_config)
    sites: list[str] = [site] if isinstance(site, str) else list(site or [])
    if not sites and isinstance(sae_config, SAEConfig) and sae_config.hook_name:
        sites = [sae_config.hook_name] + ([sae_config.hook_name_out] if sae_config.hook_name_out else [])
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], Model):
        if len(sites) not in (1, 2):
            raise SAEError(
                "on-the-fly training needs site='blocks.N.resid_post' (or a pair of sites for a transcoder)"
            )
        fields = _sae_fields(sae_config)
        fields.update(hook_name=sites[0], hook_name_out=sites[1] if len(sites) == 2 else None)
        return _train_model(source[0], source[1], [fields], tcfg, checkpoint_dir, resume, progress, callback)[
            0
        ]

    if torch.is_tensor(source) or (isinstance(source, tuple) and all(torch.is_tensor(t) for t in source)):
        x, y = (source, None) if torch.is_tensor(source) else source
        if x.ndim != 2 or x.shape[0] == 0 or (y is not None and (y.ndim != 2 or y.shape[0] != x.shape[0])):
            raise SAEError(
                f"train expects an [n, d_in] tensor (or two with the same n), not shape {list(x.shape)}"
            )
        n, d_in, d_out = x.shape[0], x.shape[1], (y.shape[1] if y is not None else None)
        tcfg = dataclasses.replace(tcfg, batch_size=min(tcfg.batch_size, n))
        if tcfg.steps is None:
            least = MIN_TENSOR_STEPS_BY_KIND.get(_kind(sae_config), MIN_TENSOR_STEPS)
            tcfg = dataclasses.replace(
                tcfg, steps=min(20_000, max(least, math.ceil(5 * n / tcfg.batch_size)))
            )
        data: Any = TensorSource(x, y, tcfg.batch_size, tcfg.seed)
    elif isinstance(source, BatchStore):
        sites = sites or _only_site(source)
        probe = [
            torch.as_tensor(next(iter(source.batches(s, batch_size=1, shuffle=False, seed=0)))) for s in sites
        ]
        d_in, d_out = probe[0].shape[-1], (probe[1].shape[-1] if len(probe) > 1 else None)
        n = len(source) if isinstance(source, Sized) else None
        if n is not None:  # a batch larger than the store could never be served: use the whole store
            tcfg = dataclasses.replace(tcfg, batch_size=min(tcfg.batch_size, n))
        if tcfg.steps is None:
            if n is None:
                raise SAEError("this store has no len(); pass train_config={'steps': N}")
            tcfg = dataclasses.replace(tcfg, steps=max(1, n // tcfg.batch_size))
            _warn_if_few_steps(tcfg, n, "one epoch of the store")
        data = StoreSource(source, sites, tcfg.batch_size, tcfg.seed)
    else:
        raise SAEError(
            f"train needs an activation store, an [n, d_in] tensor or (model, texts), not {type(source).__name__}"
        )
    config = _resolve_config(sae_config, d_in, d_out, sites)
    return _run([config], [data], tcfg, checkpoint_dir, resume, progress, callback, "auto")[0]


def _kind(sae_config: Any) -> str:
    """The SAE kind ``sae_config`` asks for (an SAEConfig or a dict of its fields)."""
    if isinstance(sae_config, SAEConfig):
        return sae_config.kind
    return str(_sae_fields(sae_config).get("kind", SAEConfig.__dataclass_fields__["kind"].default))


def train_on_model(
    model: Model,
    texts: Sequence[str],
    sites: Sequence[str],
    configs: Sequence[SAEConfig | Mapping[str, Any]] | None = None,
    train_config: TrainConfig | Mapping[str, Any] | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callback | None = None,
) -> list[SAE]:
    """Train several SAEs from ONE forward pass per batch of texts (no activations on disk).

    ``configs``: ``SAEConfig``s or dicts of ``SAEConfig`` fields (``d_in`` is read from the model). A config
    with a ``hook_name`` trains there (transcoders also name ``hook_name_out``); one without is trained on every
    site of ``sites``. Token rows of padding are dropped; rows are shuffled in a buffer of
    ``train_config.buffer_batches`` batches (``context`` and ``text_batch_size`` are also ``TrainConfig``
    fields). ``steps=None``: one pass over the texts. Returns the SAEs in the order of the expanded configs.

    ``checkpoint_dir``: every SAE with its optimiser and RNG state, plus the stream's position in the texts,
    its shuffle generator and its buffer of not yet used rows. ``resume=True`` continues from it and gives the
    same final weights as an uninterrupted run; a checkpoint made for other configs, texts or stream settings is
    refused. ``callback(step, metrics)`` runs after each step (after that step's checkpoint).
    """
    plan: list[dict[str, Any]] = []
    for c in configs or [{}]:
        fields = _sae_fields(c)
        if fields.get("hook_name"):
            plan.append(fields)
        else:
            plan.extend({**fields, "hook_name": s, "hook_name_out": None} for s in sites)
    tcfg = _train_config(train_config)
    return _train_model(model, texts, plan, tcfg, checkpoint_dir, resume, progress, callback)


def _train_model(model, texts, plan, tcfg, checkpoint_dir, resume, progress, callback) -> list[SAE]:
    """On-the-fly training of the SAEs of ``plan`` (dicts of SAEConfig fields that name their sites)."""
    if isinstance(texts, str) or not len(texts):
        raise SAEError("texts must be a non-empty list of strings")
    needed = list(
        dict.fromkeys(
            [p["hook_name"] for p in plan] + [p["hook_name_out"] for p in plan if p.get("hook_name_out")]
        )
    )
    model.resolve(needed)  # unknown names fail here, before any work
    stream = ModelStream(model, list(texts), needed, tcfg)
    first = stream.peek()
    sae_cfgs = []
    for fields in plan:
        s_in, s_out = fields["hook_name"], fields.get("hook_name_out")
        d_out = first[s_out].shape[-1] if s_out else None
        sae_cfgs.append(
            _resolve_config(fields, first[s_in].shape[-1], d_out, [s_in] + ([s_out] if s_out else []))
        )
    if tcfg.steps is None:
        tcfg = dataclasses.replace(tcfg, steps=max(1, stream.estimate_batches()))
        _warn_if_few_steps(tcfg, stream.estimate_batches() * tcfg.batch_size, "one pass over the texts")
    sources = [SharedSource(stream, c.hook_name, c.hook_name_out if c.transcoder else None, owner=i == 0)
               for i, c in enumerate(sae_cfgs)]  # fmt: skip
    name = getattr(getattr(model.module, "config", None), "_name_or_path", None) or None
    return _run(sae_cfgs, sources, tcfg, checkpoint_dir, resume, progress, callback, False, model_name=name)


# ---- settings: one way in each ------------------------------------------------------------------------
def _train_config(value: TrainConfig | Mapping[str, Any] | None) -> TrainConfig:
    if value is None or isinstance(value, TrainConfig):
        return value or TrainConfig()
    if not isinstance(value, Mapping):
        raise SAEError(
            f"train_config must be a TrainConfig or a dict of its fields, not {type(value).__name__}"
        )
    unknown = sorted(set(value) - _TRAIN_FIELDS)
    if unknown:
        raise SAEError(
            f"{', '.join(map(repr, unknown))} is not a TrainConfig field; use one of {', '.join(sorted(_TRAIN_FIELDS))}"
        )
    return TrainConfig(**value)


def _sae_fields(value: SAEConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    """A dict of the SAEConfig fields set in ``value``; the widths are left to the data."""
    if isinstance(value, SAEConfig):
        set_fields = {
            f.name: getattr(value, f.name)
            for f in dataclasses.fields(SAEConfig)
            if f.name not in ("d_in", "d_out", "extra") and getattr(value, f.name) != f.default
        }
        return _sae_fields(set_fields)
    if value is not None and not isinstance(value, Mapping):
        raise SAEError(f"sae_config must be an SAEConfig or a dict of its fields, not {type(value).__name__}")
    fields = dict(value or {})
    unknown = sorted(set(fields) - _SAE_FIELDS)
    if unknown:
        raise SAEError(
            f"{', '.join(map(repr, unknown))} is not an SAEConfig field; use one of {', '.join(sorted(_SAE_FIELDS))}"
        )
    fields.setdefault("kind", "topk")
    fields.setdefault("d_sae", DEFAULT_D_SAE)
    if fields["kind"] not in ("topk", "batchtopk"):
        fields.setdefault("k", None)
    return fields


def _resolve_config(
    value: SAEConfig | Mapping[str, Any] | None, d_in: int, d_out: int | None, sites: list[str]
) -> SAEConfig:
    """The SAEConfig of ``value`` for data of width ``d_in`` (and targets of width ``d_out``) read at ``sites``."""
    if isinstance(value, SAEConfig):
        if value.d_in != d_in or (d_out is not None and value.out_dim != d_out):
            raise SAEError(
                f"the SAEConfig is for widths {value.d_in} -> {value.out_dim} but the data has {d_in} -> "
                f"{d_out or d_in}; leave d_in out (pass a dict of fields) to take it from the data"
            )
        return value
    fields = _sae_fields(value)
    if fields.get("d_in") not in (None, d_in):
        raise SAEError(f"d_in is {fields['d_in']} but the activations have width {d_in}; leave d_in out")
    fields["d_in"] = d_in
    fields.setdefault("hook_name", sites[0] if sites else None)
    if d_out is not None:  # targets of their own: a transcoder
        fields.update(transcoder=True, d_out=d_out)
        fields.setdefault("apply_b_dec_to_input", False)
        fields.setdefault("hook_name_out", sites[1] if len(sites) > 1 else None)
    return SAEConfig(**fields)


def _only_site(store: BatchStore) -> list[str]:
    avail = list(getattr(store, "sites", []) or [])
    if len(avail) != 1:
        raise SAEError(
            f"this store holds several sites ({', '.join(map(str, avail))}); choose one with site= (tsi train-sae: --site)"
        )
    return avail


# ---- silent useless results become warnings ------------------------------------------------------------
def _warn_if_few_steps(tcfg: TrainConfig, n_rows: int, what: str) -> None:
    steps = int(tcfg.steps or 0)
    if steps < FEW_STEPS:
        warnings.warn(
            f"SAE training will run only {steps} step{'s' if steps != 1 else ''} ({what}: {n_rows} rows in "
            f"batches of {tcfg.batch_size}), too few to learn anything; set steps (tsi train-sae: --steps) to "
            f"at least {FEW_STEPS * 10} to train several epochs, or give more data",
            SAEWarning,
            stacklevel=3,
        )


def _warn_if_useless(sae: SAE, metrics: dict[str, float]) -> None:
    fvu = metrics.get("fvu", 0.0)
    if fvu > 1.0:
        name = "transcoder" if sae.cfg.transcoder else "SAE"
        warnings.warn(
            f"the trained {name} predicts worse than the mean (FVU {fvu:.2f} > 1 on the last batch); train "
            "more steps or on more data, or lower the learning rate",
            SAEWarning,
            stacklevel=3,
        )


# ---- the loop -------------------------------------------------------------------------------------------
def _run(configs, sources, tcfg, checkpoint_dir, resume, progress, callback, distributed, model_name=None):
    dist = Dist(distributed)
    try:
        steps = int(tcfg.steps)
        trainers = [Trainer(c, tcfg, steps, dist) for c in configs]
        ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
        every = tcfg.checkpoint_every or max(1, steps // 10)
        start = 0
        if ckpt is not None and resume:
            _checkpoint.refuse_legacy(ckpt)
            if _checkpoint.exists(ckpt):
                start = _resume(ckpt, trainers, sources)
        bar = _bar(progress and dist.rank == 0, steps, start)
        for step in range(start, steps):
            metrics: dict[str, float] = {}
            for t, src in zip(trainers, sources, strict=True):
                x, y = src.get(step)
                metrics = t.step(x, y)
            if ckpt is not None and ((step + 1) % every == 0 or step + 1 == steps):
                if dist.rank == 0:
                    _checkpoint.write(ckpt, step + 1, {
                        "trainers": [t.state() for t in trainers],
                        "data": [src.state() if hasattr(src, "state") else None for src in sources],
                    })  # fmt: skip
                dist.barrier()
            if bar is not None and (step % tcfg.log_every == 0 or step + 1 == steps):
                bar.set_postfix(_fmt(metrics), refresh=False)
            if bar is not None:
                bar.update(1)
            if callback is not None:
                callback(step + 1, metrics)
        if bar is not None:
            bar.close()
        saes = [t.finish(c.hook_name, model_name) for t, c in zip(trainers, configs, strict=True)]
        if dist.rank == 0:
            for sae, t in zip(saes, trainers, strict=True):
                _warn_if_useless(sae, t.last)
        return saes
    finally:
        dist.close()


def _resume(ckpt: Path, trainers: list[Trainer], sources: list[Any]) -> int:
    """Load the checkpoint in ``ckpt`` into the trainers and sources; returns the step to continue from."""
    step, st = _checkpoint.read(ckpt)
    saved = st.get("trainers")
    if not isinstance(saved, list) or not isinstance(st.get("data"), list):
        raise _checkpoint.damaged(ckpt, "it holds no trainers")
    if len(saved) != len(trainers):
        raise SAEError(
            f"the checkpoint holds {len(saved)} SAEs, this run trains {len(trainers)}; "
            "use resume=False or another checkpoint_dir"
        )
    try:
        for t, s in zip(trainers, saved, strict=True):
            t.load_state(s)
        for src, s in zip(sources, st["data"], strict=True):
            if hasattr(src, "load_state"):
                src.load_state(s)
    except SAEError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise _checkpoint.damaged(ckpt, f"its state does not fit this run: {type(exc).__name__}") from None
    return step


def _fmt(m: dict[str, float]) -> dict[str, str]:
    return {
        "loss": f"{m.get('loss', 0):.4g}",
        "L0": f"{m.get('l0', 0):.1f}",
        "FVU": f"{m.get('fvu', 0):.3f}",
        "dead": f"{m.get('dead', 0):.1%}",
    }


def _bar(on: bool, total: int, start: int) -> Any:
    return bar_of(total, desc="train SAE", unit="step", enabled=on, initial=start)
