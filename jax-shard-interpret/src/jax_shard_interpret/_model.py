"""``jsi.wrap``: a Flax NNX or Equinox module with named sites (raw by module path, canonical by adapter)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._adapters import Adapter, find_adapter
from ._errors import InputError, SiteNotFoundError
from ._hooks import backend_of, iter_modules
from ._sites import select


@dataclass
class Config:
    """Shapes of a decoder (None where unknown), with the same field names as ``tsi``'s ``model.cfg``."""

    n_layers: int | None = None
    d_model: int | None = None
    n_heads: int | None = None
    d_head: int | None = None
    d_vocab: int | None = None
    d_mlp: int | None = None


class Model:
    """A wrapped module: ``module`` (unchanged), ``backend`` (``"nnx"``/``"eqx"``), ``tokenizer``, ``cfg``,
    ``adapter`` and ``sites()``. Pass it (or the bare module) to ``jsi.run``."""

    def __init__(self, module: Any, tokenizer: Any = None, adapter: Adapter | str | None = "auto"):
        if isinstance(module, Model):
            module = module.module
        self.module = module
        self.backend = backend_of(module)
        self.tokenizer = tokenizer
        self.eos_token_id: int | None = None
        paths = [p for p, _ in iter_modules(module, self.backend)]
        self._raw: dict[str, tuple[str, str, Any]] = {}
        for p in paths:
            for side in ("input", "output"):
                self._raw[f"{p}:{side}"] = (p, side, None)
        ref = getattr(module, "config", None)
        self.cfg = Config(**{k: getattr(ref, k, None) for k in Config.__dataclass_fields__})
        n = 0
        if adapter == "auto":
            adapter, n = find_adapter(set(paths))
        elif adapter is not None and not isinstance(adapter, Adapter):
            raise InputError(f"adapter must be 'auto', None or a jsi.Adapter, not {adapter!r}")
        elif adapter is not None:
            n = adapter.layout(set(paths)) or 0
        self.adapter = adapter if n else None
        self._canonical = self.adapter.sites(n, self.cfg.n_heads, set(paths)) if self.adapter else {}
        if self.adapter and self.cfg.n_layers is None:
            self.cfg.n_layers = n

    def sites(self, pattern: str | None = None) -> list[str]:
        """Every site name (canonical first, then raw), or those matching the glob ``pattern``."""
        names = [*self._canonical, *self._raw]
        return names if pattern is None else select(pattern, names)

    def resolve(self, name: str) -> tuple[str, str, Any]:
        """``(module path, side, view)`` of one site name."""
        hit = self._canonical.get(name) or self._raw.get(name)
        if hit is None:
            raise SiteNotFoundError(name, self.sites())
        return hit

    def tokenize(self, text: str | list[str]) -> Any:
        import numpy as np

        if self.tokenizer is None:
            raise InputError(
                "text input needs a tokenizer; wrap the model with jsi.wrap(module, tokenizer=...)"
            )
        texts = [text] if isinstance(text, str) else list(text)
        if not texts or any(not isinstance(t, str) or not t for t in texts):
            raise InputError("the prompt is empty; give a non-empty string (or a list of them)")
        ids = [self.tokenizer.encode(t).ids for t in texts]
        if len({len(i) for i in ids}) != 1:
            raise InputError(
                f"the prompts have different token lengths {[len(i) for i in ids]}; give prompts of equal length "
                "or token ids"
            )
        return np.asarray(ids, dtype=np.int32)

    def str_tokens(self, ids: Any) -> list[str]:
        ids = [int(i) for i in ids]
        if self.tokenizer is None:
            return [str(i) for i in ids]
        return [self.tokenizer.decode([i]) for i in ids]

    def token_id(self, token: int | str) -> int:
        if isinstance(token, str):
            if self.tokenizer is None:
                raise InputError("a token given as text needs a tokenizer; pass its id instead")
            ids = self.tokenizer.encode(token, add_special_tokens=False).ids
            if len(ids) != 1:
                raise InputError(f"{token!r} is {len(ids)} tokens, not one; choose a single-token string")
            return int(ids[0])
        return int(token)

    def __repr__(self) -> str:
        a = self.adapter.name if self.adapter else None
        return f"jsi.Model({type(self.module).__name__}, backend={self.backend!r}, adapter={a!r})"


def wrap(module: Any, tokenizer: Any = None, adapter: Adapter | str | None = "auto") -> Model:
    """Wrap any Flax NNX module or Equinox module (nothing is copied or changed)."""
    return module if isinstance(module, Model) and tokenizer is None else Model(module, tokenizer, adapter)
