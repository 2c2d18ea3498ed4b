# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""Splices: sites derived from another site through an encoder/decoder pair (e.g. a sparse autoencoder).

A splice at site ``S`` named ``sae`` adds two sites: ``S.sae.latents`` (``encode(x)``) and ``S.sae.error``
(``x - decode(encode(x))``). When either is changed, the model continues with ``decode(latents) + error``;
when neither is, the model continues with ``x`` itself, so caching latents never changes the output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class Splice:
    """An encoder/decoder pair attached to a site."""

    name: str
    encode: Callable[[torch.Tensor], torch.Tensor]
    decode: Callable[[torch.Tensor], torch.Tensor]
    latent_dim: str = "d_sae"

    def parts(self, x: torch.Tensor, detached: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latents, error)`` for the parent value ``x``.

        ``detached=True`` (gradient runs) makes the latents a leaf and takes the decoder term of the error
        as a constant, so that ``decode(latents) + error`` has derivative ``decode'`` in the latents, the
        identity in the error and the identity in ``x``: gradients to earlier sites stay exact.
        """
        latents = self.encode(x)
        if detached:
            latents = latents.detach().requires_grad_(True)
            with torch.no_grad():
                recon = self.decode(latents).to(x.dtype)
            return latents, x - recon
        return latents, x - self.decode(latents).to(x.dtype)

    def join(self, latents: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
        return self.decode(latents).to(error.dtype) + error
