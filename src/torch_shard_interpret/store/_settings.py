"""What a store records about how it was made (the manifest's settings), and how resume compares them.

The model is recorded by a stable name: ``"smollm2-135m"`` for the embedded model (not the cache folder
it is loaded from), otherwise the name it was loaded by (a Hub id, or the path the user gave). Where the
files of a model live is kept apart, in ``model.path``, and never compared: the same model loaded from
another cache folder is the same model. Stores written before ``model.path`` existed recorded the folder
as ``model.name``; resume accepts them when that folder is the model's folder now.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ._data import Source

if TYPE_CHECKING:
    from ..core._model import Model

DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
# Settings that must match for resume=True to reuse finished shards.
SETTINGS = ("model", "sites", "dtype", "context", "batch_size", "shard_rows", "source")


def model_identity(model: Model) -> dict[str, Any]:
    """``{"name", "class", "d_model"}`` of a tsi model, plus ``"path"`` when its files are in a folder."""
    module = model.module
    hf = getattr(module, "config", None)
    loaded_from = getattr(hf, "_name_or_path", None) or ""
    name = loaded_from or type(module).__name__
    path = None
    if loaded_from and Path(loaded_from).is_dir():
        path = str(Path(loaded_from).resolve())
        if _is_embedded(Path(loaded_from)):
            from ..loading import _embedded

            name = _embedded.NAME
    out = {"name": name, "class": f"{type(module).__module__}.{type(module).__qualname__}",
           "d_model": model.cfg.d_model}  # fmt: skip
    if path is not None and path != name:
        out["path"] = path
    return out


def _is_embedded(folder: Path) -> bool:
    from ..loading import _embedded

    if (folder / _embedded.MARKER).is_file() and folder.name == _embedded.NAME:
        return True
    try:
        return folder.resolve() == _embedded.cache_dir().resolve()
    except OSError:
        return False


def harvest_settings(model: Model, shapes: dict[str, tuple[int, ...]], dtype: torch.dtype, context: int,
                     batch_size: int, shard_rows: int, source: Source) -> dict[str, Any]:  # fmt: skip
    tok = model.tokenizer
    return {
        "model": model_identity(model),
        "tokenizer": (getattr(tok, "name_or_path", None) or type(tok).__name__) if tok is not None else None,
        "sites": {n: {"shape": list(s)} for n, s in shapes.items()},
        "dtype": DTYPES[dtype],
        "context": context,
        "batch_size": batch_size,
        "shard_rows": shard_rows,
        "source": source.description,
    }


def same_model(old: Any, new: dict[str, Any]) -> bool:
    """Whether the manifest's ``old`` model record names the model ``new`` describes (see the docstring)."""
    if not isinstance(old, dict):
        return False
    if any(old.get(k) != new.get(k) for k in ("class", "d_model")):
        return False
    if old.get("name") == new["name"]:
        return True
    # a store written before model.path: its name is the folder the model was loaded from
    return "path" not in old and new.get("path") is not None and _same_path(old.get("name"), new["path"])


def _same_path(a: Any, b: str) -> bool:
    if not isinstance(a, str) or not a:
        return False
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def settings_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The settings in which the manifest ``old`` differs from ``new`` (sites first, in order too)."""
    diff = []
    old_sites = old.get("sites")
    if not isinstance(old_sites, dict) or list(old_sites) != list(new["sites"]) or old_sites != new["sites"]:
        diff.append("sites")
    for k in SETTINGS:
        if k == "sites":
            continue
        same = same_model(old.get(k), new[k]) if k == "model" else old.get(k) == new[k]
        if not same:
            diff.append(k)
    return diff
