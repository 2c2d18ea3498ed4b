"""SAE latents as sites: ``{site}.sae.latents`` and ``{site}.sae.error`` through the core's splices."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import SAEError
from ._sites import site_for

if TYPE_CHECKING:
    from ..core._model import Model


def _site(model: Model, sae: Any, site: str | None) -> str:
    """``site`` or the SAE's own ``hook_name``, as a site of ``model`` (SAELens's TransformerLens names, such
    as ``blocks.3.hook_resid_post``, map to ours)."""
    site = site or sae.cfg.hook_name
    if not site:
        raise SAEError(
            "this SAE does not name its site (cfg.hook_name is empty); pass site='blocks.N.resid_post'"
        )
    return site_for(model, site)


def attach(model: Model, sae: Any, site: str | None = None, name: str = "sae") -> list[str]:
    """Splice ``sae`` into ``model`` at ``site`` (default ``sae.cfg.hook_name``; TransformerLens hook names as
    SAELens writes them, ``blocks.3.hook_resid_post``, are accepted) under ``name``.

    Adds ``{site}.{name}.latents`` (``[batch, pos, d_sae]``) and ``{site}.{name}.error`` (``x - x_hat``): cache,
    patch, ablate or steer them like any site; the model's output is unchanged until one of them is changed.
    Returns the two new site names.
    """
    if sae.cfg.transcoder:
        raise SAEError(
            "a transcoder predicts another site, so it cannot be spliced as latents + error at one site; "
            "use tsi.Set(transcoder(x)) at its output site instead"
        )
    return model.add_splice(_site(model, sae, site), name, sae.encode, sae.decode)


def detach(model: Model, sae: Any = None, site: str | None = None, name: str = "sae") -> None:
    """Remove the sites added by ``attach`` (by the SAE's own site, or ``site=``)."""
    model.remove_splice(site_for(model, site) if site else _site(model, sae, None), name)
