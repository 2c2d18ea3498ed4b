"""``Attribution``: one pixel-attribution result, with its own sanity check, ``to_dict`` and ``to_html``.

It behaves like its ``attributions`` tensor where a tensor is expected (``result.shape``, ``result[0]``,
``torch.allclose(result, x)``), so ``grad_cam(...)`` can be used as the ``[batch, H, W]`` map it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._render import esc, fmt, img_tag
from ..core._model import Model
from ._picture import overlay, to_rgb, upscale
from ._sanity import SanityReport, sanity_check


class Attribution:
    """An attribution map per image: ``attributions`` ``[batch, C, H, W]`` (pixels) or ``[batch, H, W]`` (CAMs)."""

    def __init__(
        self,
        method: str,
        attributions: torch.Tensor,
        images: torch.Tensor,
        target: torch.Tensor,
        model: Model | None = None,
        recompute: Callable[[Model], torch.Tensor] | None = None,
        **extra: Any,
    ):
        self.method = method
        self.attributions = attributions
        self.images = images
        self.target = target
        self.extra = extra
        self._model = model
        self._recompute = recompute
        self._sanity: SanityReport | None = None

    # ---- tensor-like --------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        return getattr(self.__dict__["attributions"], name)

    def __getitem__(self, index: Any) -> torch.Tensor:
        return self.attributions[index]

    def __len__(self) -> int:
        return len(self.attributions)

    def __array__(self, dtype=None, copy=None):
        a = self.attributions.detach().cpu().numpy()
        return a if dtype is None else a.astype(dtype)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        def unwrap(x):
            return x.attributions if isinstance(x, Attribution) else x

        args = tuple(unwrap(a) for a in args)
        kwargs = {k: unwrap(v) for k, v in (kwargs or {}).items()}
        return func(*args, **kwargs)

    # ---- views --------------------------------------------------------------------------------
    @property
    def map(self) -> torch.Tensor:
        """``[batch, H, W]``: summed over channels for pixel maps, as is for CAMs."""
        a = self.attributions
        return a.sum(1) if a.ndim == 4 else a

    def sanity(
        self, label_model: Model | None = None, max_steps: int = 8, seed: int = 0, independent: bool = False
    ) -> SanityReport:
        """How much the map changes under cascading weight randomization (and, given ``label_model`` — the
        same architecture trained on permuted labels, e.g. ``tsi.vision.load("digits-cnn-random-labels")`` or
        ``tsi.vision.random_label_model(...)`` — label randomization; ``independent=True``: also each layer
        group re-drawn alone). ``.flagged`` when it barely changes. Cached on the result."""
        if self._model is None or self._recompute is None:
            raise ValueError("this attribution was loaded without its model, so it cannot be re-checked")
        self._sanity = sanity_check(
            self.method,
            self._model,
            self.attributions,
            self._recompute,
            label_model,
            max_steps,
            seed,
            independent=independent,
        )
        return self._sanity

    def to_dict(self) -> dict:
        out = {
            "method": self.method,
            "shape": list(self.attributions.shape),
            "target": self.target.tolist(),
            "attributions": self.attributions.detach().cpu().tolist(),
        }
        for key, val in self.extra.items():
            out[key] = val.tolist() if torch.is_tensor(val) else val
        if self._sanity is not None:
            out["sanity"] = self._sanity.to_dict()
        return out

    def to_html(self, size: int = 160) -> str:
        cells = []
        for i in range(min(len(self.images), 8)):
            img = upscale(to_rgb(self.images[i]), size)
            ov = upscale(overlay(self.images[i], self.map[i]), size)
            cells.append(
                f"<figure>{img_tag(img, title='image')}{img_tag(ov, title=self.method)}"
                f"<figcaption>target {int(self.target[i])}</figcaption></figure>"
            )
        notes = ""
        err = self.extra.get("completeness_error")
        if err is not None:
            notes = f"<p>completeness error (max |sum IG - delta f|): {fmt(float(err.abs().max()))}</p>"
        sanity = self._sanity.to_html() if self._sanity is not None else ""
        return f"<section><h3>{esc(self.method)}</h3><div>{''.join(cells)}</div>{notes}{sanity}</section>"


def custom(
    name: str,
    model: Model | torch.nn.Module,
    images: torch.Tensor,
    fn: Callable[[Model, torch.Tensor], torch.Tensor],
    target=None,
) -> Attribution:
    """Any map ``fn(model, images) -> [batch, ...]`` as an ``Attribution``, so it can be sanity-checked."""
    from ._common import as_model, check_images, targets

    model, images = as_model(model), check_images(images)
    t = targets(model, images, target)

    def compute(m):
        return fn(m, images)

    return Attribution(name, compute(model).detach(), images, t, model=model, recompute=compute)
