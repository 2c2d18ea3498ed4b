# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""ActivationCache: the activations one run recorded, by site name."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from ._errors import SiteNotFoundError
from ._site import is_glob, match_glob, natural_key


class ActivationCache(Mapping[str, torch.Tensor]):
    """A read-only mapping ``site name -> tensor`` with ``stack``, ``to`` and glob look-ups."""

    __slots__ = ("_data",)  # one per run: no instance dict to allocate

    def __init__(self, data: dict[str, torch.Tensor] | None = None):
        self._data: dict[str, torch.Tensor] = {} if data is None else data

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self._data[name]
        except KeyError:
            raise SiteNotFoundError(
                name, self._data.keys(), hint="not in this cache; pass it in cache="
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def names(self, pattern: str | None = None) -> list[str]:
        names = list(self._data)
        return names if pattern is None else match_glob(pattern, names) if is_glob(pattern) else [pattern]

    def stack(self, pattern: str) -> torch.Tensor:
        """Stack the cached sites matching ``pattern`` in natural order: ``[n_sites, *site_shape]``."""
        names = sorted(self.names(pattern), key=natural_key)
        if not names:
            raise SiteNotFoundError(pattern, self._data.keys(), hint="no cached site matches it")
        return torch.stack([self[n] for n in names])

    def to(self, *args: Any, **kwargs: Any) -> ActivationCache:
        return ActivationCache({k: v.to(*args, **kwargs) for k, v in self._data.items()})

    def detach(self) -> ActivationCache:
        return ActivationCache({k: v.detach() for k, v in self._data.items()})

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {list(v.shape)}" for k, v in self._data.items())
        return f"ActivationCache({inner})"
