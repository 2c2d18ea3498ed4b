"""SAE latents as sites: ``{site}.sae.latents`` and ``{site}.sae.error`` through the core's splices."""

from __future__ import annotations

from typing import Any

from ._config import SAEError


def _site(sae: Any, site: str | None) -> str:
    site = site or sae.cfg.hook_name
    if not site:
        raise SAEError(
            "this SAE does not name its site (cfg.hook_name is empty); pass site='blocks.N.resid_post'"
        )
    return site


def attach(model: Any, sae: Any, site: str | None = None, name: str = "sae") -> list[str]:
    """Splice ``sae`` into ``model`` at ``site`` (default ``sae.cfg.hook_name``) under ``name``.

    Adds ``{site}.{name}.latents`` (``[batch, pos, d_sae]``) and ``{site}.{name}.error`` (``x - x_hat``): cache,
    patch, ablate or steer them like any site; the model's output is unchanged until one of them is changed.
    Returns the two new site names.
    """
    if sae.cfg.transcoder:
        raise SAEError(
            "a transcoder predicts another site, so it cannot be spliced as latents + error at one site; "
            "use tsi.Set(transcoder(x)) at its output site instead"
        )
    return model.add_splice(_site(sae, site), name, sae.encode, sae.decode)


def detach(model: Any, sae: Any = None, site: str | None = None, name: str = "sae") -> None:
    """Remove the sites added by ``attach`` (by the SAE's own site, or ``site=``)."""
    model.remove_splice(site or _site(sae, None), name)
