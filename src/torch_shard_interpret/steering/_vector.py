"""SteeringVector: one direction in the residual stream (or any site), how it was made, and how to add it.

Three recipes, all from cached activations of the real model:

- ``from_contrast``: mean activation over positive texts minus mean over negative texts (CAA-style).
- ``from_pair``: one prompt pair (ActAdd). The two prompts are aligned from their first token and the
  per-position differences are averaged over the matched positions ``0 .. min(len) - 1`` (``position="mean"``,
  the default) or taken at one matched position (``position=k``; negative ``k`` counts back from the end of
  the shorter prompt). Aligning from the start is what ActAdd does (it pads the shorter prompt at the end);
  averaging makes a ``[d_model]`` vector that can be added at any position, including generated tokens.
- ``from_pca``: the first principal component of the paired differences ``pos_i - neg_i``, sign-aligned with
  their mean and scaled to the mean difference's length along it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import _io
from ..core._errors import InputError, ShapeMismatchError, TsiError
from ..core._interventions import Add
from ._acts import Position, as_texts, check_position, collect

if TYPE_CHECKING:
    from ..core._model import Model

FORMAT = "tsi.steering_vector"
VERSION = 1


class SteeringFileError(TsiError, OSError):
    """A steering vector file is missing, unreadable, corrupt or cannot be written."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "steering vector file error"


@dataclass
class SteeringVector:
    """A vector to add at ``site``: ``model.intervene({site: tsi.Add(vector, scale)})``."""

    vector: torch.Tensor
    """``[d_model]`` (the size of the site's last dimension), float32 on the CPU."""
    site: str
    """Where it was read and where ``apply`` adds it, e.g. ``"blocks.6.resid_post"``."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """How it was made (method, position, counts, norm...); JSON-serialisable."""

    def __post_init__(self) -> None:
        if not torch.is_tensor(self.vector):
            self.vector = torch.as_tensor(self.vector)
        if self.vector.ndim != 1:
            raise ShapeMismatchError(
                f"a steering vector must be one-dimensional [d_model], not shape {list(self.vector.shape)}"
            )
        self.vector = self.vector.detach().float().cpu()
        if not isinstance(self.site, str) or not self.site:
            raise InputError(f"site must be a site name such as 'blocks.6.resid_post', not {self.site!r}")

    # ---- constructors -------------------------------------------------------------------------
    @classmethod
    def from_contrast(
        cls,
        model: Model,
        positive_texts: str | Sequence[str],
        negative_texts: str | Sequence[str],
        site: str = "blocks.6.resid_post",
        position: Position = -1,
        batch_size: int = 16,
    ) -> SteeringVector:
        """Mean activation of ``positive_texts`` minus mean of ``negative_texts`` at ``site``.

        ``position``: the token read in each text (``-1``: the last real token) or ``"mean"`` (the mean over
        each text's tokens). The two lists may differ in length.
        """
        pos_texts = as_texts(positive_texts, "positive_texts")
        neg_texts = as_texts(negative_texts, "negative_texts")
        site, pos, neg = _pair_acts(model, pos_texts, neg_texts, site, position, batch_size)
        vec = pos.mean(0) - neg.mean(0)
        meta = {
            "method": "contrast",
            "position": position,
            "n_positive": len(pos_texts),
            "n_negative": len(neg_texts),
        }
        return cls(vec, site, _meta(model, vec, meta))

    @classmethod
    def from_pair(
        cls,
        model: Model,
        positive: str,
        negative: str,
        site: str = "blocks.6.resid_post",
        position: Position = "mean",
    ) -> SteeringVector:
        """ActAdd: the activation difference of one prompt pair at matched positions (see the module docstring)."""
        positive = (
            as_texts(positive, "positive")[0] if isinstance(positive, str) else _one(positive, "positive")
        )
        negative = (
            as_texts(negative, "negative")[0] if isinstance(negative, str) else _one(negative, "negative")
        )
        position = check_position(position)
        name = _site_name(model, site)
        a = (
            model.run(positive, cache=name, return_logits=False).cache[name][0].float().cpu()
        )  # [pos, d_model]
        b = model.run(negative, cache=name, return_logits=False).cache[name][0].float().cpu()
        n = min(a.shape[0], b.shape[0])
        diff = a[:n] - b[:n]  # [n, d_model], aligned from the first token
        if position == "mean":
            vec = diff.mean(0)
        else:
            p = position if position >= 0 else n + position
            if not 0 <= p < n:
                raise InputError(
                    f"position {position} is out of range: the shorter prompt has {n} tokens "
                    f"(use {-n}..{n - 1}, or 'mean')"
                )
            vec = diff[p]
        meta = {
            "method": "pair",
            "position": position,
            "matched_positions": n,
            "positive": positive,
            "negative": negative,
            "lengths": [int(a.shape[0]), int(b.shape[0])],
        }
        return cls(vec, name, _meta(model, vec, meta))

    @classmethod
    def from_pca(
        cls,
        model: Model,
        positive_texts: Sequence[str],
        negative_texts: Sequence[str],
        site: str = "blocks.6.resid_post",
        position: Position = -1,
        center: bool = True,
        batch_size: int = 16,
    ) -> SteeringVector:
        """First principal component of the paired differences ``pos_i - neg_i`` (the lists pair up one to one).

        ``center=True`` subtracts the mean difference before the PCA (RepE-style), so the component is the
        direction along which the pairs vary most. The sign makes it point along the mean difference, and its
        length is the mean difference's projection on it, so scales are comparable with ``from_contrast``.
        """
        pos_texts = as_texts(positive_texts, "positive_texts")
        neg_texts = as_texts(negative_texts, "negative_texts")
        if len(pos_texts) != len(neg_texts):
            raise InputError(
                f"from_pca pairs texts one to one, but got {len(pos_texts)} positive and {len(neg_texts)} "
                "negative texts; give lists of equal length (or use from_contrast)"
            )
        if len(pos_texts) < 2:
            raise InputError("from_pca needs at least 2 pairs; for one pair use from_pair")
        site, pos, neg = _pair_acts(model, pos_texts, neg_texts, site, position, batch_size)
        direction, mean_proj, explained = first_component(pos - neg, center=center)
        vec = direction * mean_proj
        meta = {
            "method": "pca",
            "position": position,
            "n_pairs": len(pos_texts),
            "center": center,
            "explained_variance": explained,
        }
        return cls(vec, site, _meta(model, vec, meta))

    # ---- use ----------------------------------------------------------------------------------
    @property
    def norm(self) -> float:
        return float(self.vector.norm())

    def intervention(self, scale: float = 1.0, positions: Any = None) -> Add:
        """``tsi.Add(vector, scale=scale, positions=positions)`` for ``model.run(interventions={sv.site: ...})``."""
        return Add(self.vector, scale=scale, positions=positions)

    def apply(self, model: Model, scale: float = 4.0, positions: Any = None) -> AbstractContextManager:
        """A context manager that adds ``scale * vector`` at ``site`` in every call inside the block.

        ``positions=None`` adds it at every position, including each generated token.
        """
        self._check_fits(model)
        return model.intervene({self.site: self.intervention(scale, positions)})

    def at(self, site: str) -> SteeringVector:
        """The same vector, to be added at another site (e.g. another layer's residual stream)."""
        return SteeringVector(self.vector.clone(), site, {**self.metadata, "read_at": self.site})

    def normalized(self) -> SteeringVector:
        """The unit vector in the same direction (then ``scale`` is the added norm)."""
        n = self.vector.norm().clamp_min(1e-12)
        return SteeringVector(self.vector / n, self.site, {**self.metadata, "normalized": True})

    def _check_fits(self, model: Model) -> None:
        _site_name(model, self.site)
        d = getattr(getattr(model, "cfg", None), "d_model", None)
        if d is not None and ".resid_" in self.site and self.vector.shape[0] != d:
            raise ShapeMismatchError(
                f"this steering vector has size {self.vector.shape[0]} but the model's d_model is {d}; "
                "build the vector on the same model it steers"
            )

    # ---- files --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write one ``.safetensors`` file (tensor ``vector``; the site and metadata as JSON in its header).

        The write is atomic (a temporary file in the same folder, then ``os.replace``). Returns the path.
        """
        try:
            from safetensors.torch import save as st_save
        except ImportError:
            raise TsiError(
                "saving a steering vector needs the safetensors package: pip install 'torch-shard-interpret[hf]'"
            ) from None
        path = Path(path)
        header = {"format": FORMAT, "version": VERSION, "site": self.site, "metadata": self.metadata}
        try:
            text = json.dumps(header, default=_json_default)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"the metadata cannot be written as JSON ({exc}); keep it to plain values"
            ) from None
        data = st_save({"vector": self.vector.contiguous()}, metadata={"tsi": text})
        atomic_write(path, data)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SteeringVector:
        """Read a file written by ``save``."""
        path = Path(path)
        if not path.is_file():
            raise SteeringFileError(
                f"no steering vector file at {str(path)!r}" + (" (it is a folder)" if path.is_dir() else "")
                + "; give the path of a file written by SteeringVector.save"
            )  # fmt: skip
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                header = json.loads((f.metadata() or {})["tsi"])
                vector = f.get_tensor("vector")
        except Exception as exc:  # noqa: BLE001 - any failure here means a corrupt or foreign file
            raise SteeringFileError(
                f"{str(path)!r} is not a readable steering vector file ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:120]}); write it with SteeringVector.save"
            ) from None
        if header.get("format") != FORMAT:
            raise SteeringFileError(f"{str(path)!r} is a safetensors file but not a tsi steering vector")
        return cls(vector, header["site"], header.get("metadata") or {})

    def __repr__(self) -> str:
        method = self.metadata.get("method", "?")
        return f"SteeringVector(site={self.site!r}, d={self.vector.shape[0]}, norm={self.norm:.3g}, method={method!r})"


def first_component(diffs: torch.Tensor, center: bool = True) -> tuple[torch.Tensor, float, float]:
    """``[n, d]`` differences -> (unit first principal component pointing along their mean, the mean's
    projection on it, the fraction of variance it explains)."""
    x = diffs.double()
    mean = x.mean(0)
    xc = x - mean if center else x
    _, s, vh = torch.linalg.svd(xc, full_matrices=False)
    u = vh[0]
    proj = float(mean @ u)
    if proj < 0:
        u, proj = -u, -proj
    total = float((s**2).sum())
    explained = float(s[0] ** 2 / total) if total > 0 else 0.0
    return u.float(), proj, explained


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SteeringFileError(
            f"cannot write {str(path)!r}: the folder {str(parent)!r} does not exist; create it first"
        )
    if path.is_dir():
        raise SteeringFileError(f"cannot write {str(path)!r}: it is a folder; give a file path")

    def failed(exc: OSError) -> SteeringFileError:
        return SteeringFileError(
            f"cannot write into {str(parent)!r} ({exc.strerror}); choose a writable folder"
        )

    raw = data.encode() if isinstance(data, str) else data
    _io.atomic_write(
        path, raw, mode=None, prefix=f".{path.name}.tmp-", suffix="", fsync=True, create_error=failed
    )


def _one(texts: Any, what: str) -> str:
    items = as_texts(texts, what)
    if len(items) != 1:
        raise InputError(f"{what} must be one prompt for from_pair; for several use from_contrast")
    return items[0]


def _site_name(model: Model, site: str) -> str:
    sites = model.resolve(site)
    if len(sites) != 1:
        raise InputError(
            f"a steering vector needs one site, but {site!r} matches {len(sites)}; name one site"
        )
    return sites[0].name


def _pair_acts(
    model: Model, pos: list[str], neg: list[str], site: str, position: Position, batch_size: int
) -> tuple[str, torch.Tensor, torch.Tensor]:
    name = _site_name(model, site)
    acts = collect(model, pos + neg, name, position, batch_size)[name]  # [n_pos + n_neg, d]
    return name, acts[: len(pos)], acts[len(pos) :]


def _meta(model: Model, vec: torch.Tensor, meta: dict[str, Any]) -> dict[str, Any]:
    cfg = getattr(model, "cfg", None)
    meta["norm"] = float(vec.norm())
    meta["architecture"] = getattr(cfg, "architecture", None)
    meta["d_model"] = int(vec.shape[0])
    return meta


def _json_default(obj: Any) -> Any:
    if torch.is_tensor(obj):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")
