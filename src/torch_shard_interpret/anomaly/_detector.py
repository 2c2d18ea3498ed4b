"""``Detector``: per-site detectors over chosen sites, combined into one score per input; fit, save, load.

    det = tsi.anomaly.fit(model, trusted_texts, sites="blocks.*.resid_post", detector="mahalanobis")
    det.score(texts)              # Tensor[batch], higher = more anomalous
    det.score_sites(texts)        # {site: Tensor[batch]}: the per-layer scores
    det.save("det/"); det = tsi.anomaly.load("det/", model=model)

The combined score is the mean over sites of each site's score standardised by its trusted mean and spread.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, overload

import torch

from .._io import atomic_path, atomic_write
from ..core._model import Model
from ..core._site import is_glob, match_glob
from ._features import REDUCE, AnomalyError, extract, site_names
from ._gaussian import QUE, Mahalanobis, SiteDetector, Spectral
from ._learned import Probe, SAELatents, Translator

DETECTORS: dict[str, type[SiteDetector]] = {
    c.name: c for c in (Mahalanobis, Spectral, QUE, SAELatents, Probe, Translator)
}
FORMAT = 1


class Detector:
    """A fitted anomaly detector over ``sites`` (see the module docs). Build one with ``tsi.anomaly.fit``."""

    def __init__(self, kind: str, sites: list[str], reduce: str, options: dict[str, Any],
                 per_site: dict[str, SiteDetector], norm: dict[str, torch.Tensor], model: Model | None = None,
                 meta: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.kind, self.sites, self.reduce, self.options = kind, sites, reduce, options
        self.per_site, self.norm, self.model = per_site, norm, model
        self.meta = dict(meta or {})

    # ---- fitting ------------------------------------------------------------------------------
    @classmethod
    def from_features(cls, feats: dict[str, torch.Tensor], kind: str = "mahalanobis", *,
                      anomalous: dict[str, torch.Tensor] | None = None, reduce: str = "mean",
                      progress: bool = True, **options: Any) -> Detector:  # fmt: skip
        """Fit on precomputed trusted features ``{site: [n, d]}`` (and labelled anomalies for ``probe``)."""
        if kind not in DETECTORS:
            raise AnomalyError(f"unknown detector {kind!r}; choose one of {', '.join(DETECTORS)}")
        impl = DETECTORS[kind]
        sites = list(feats)
        n = len(next(iter(feats.values())))
        if n < 2:
            raise AnomalyError(f"a detector needs at least 2 trusted inputs, not {n}")
        if impl.needs_labels and anomalous is None:
            raise AnomalyError("the probe detector is supervised; pass anomalous_data= (labelled anomalies)")
        if kind == "abstraction" and len(sites) < 2:
            raise AnomalyError(
                "the abstraction detector predicts each site from the one before; give at least 2 sites"
            )
        per_site: dict[str, SiteDetector] = {}
        for i, site in enumerate(sites):
            if kind == "abstraction" and i == 0:
                continue
            det = impl(**options)
            x, y = feats[site], None
            if impl.needs_labels and anomalous is not None:  # None was refused above
                x = torch.cat([x, anomalous[site]])
                y = torch.cat(
                    [torch.zeros(n, dtype=torch.long), torch.ones(len(anomalous[site]), dtype=torch.long)]
                )
            elif kind == "abstraction":
                y = feats[sites[i - 1]]
            det.fit(x, y, progress=progress)
            per_site[site] = det
        out = cls(kind, sites, reduce, options, per_site, {})
        raw = out._raw(feats)
        out.norm = {s: torch.stack([v.mean(), v.std().clamp_min(1e-6)]) for s, v in raw.items()}
        return out

    # ---- scoring ------------------------------------------------------------------------------
    def bind(self, model: Model) -> Detector:
        """Use ``model`` to compute features of raw inputs (``load`` leaves a detector unbound)."""
        self.model = model
        return self

    def features(
        self, inputs: Any, *, batch_size: int = 32, progress: bool = False
    ) -> dict[str, torch.Tensor]:
        return extract(
            self.model, inputs, self.sites, self.reduce, batch_size, progress, desc=f"{self.kind} score"
        )

    def _raw(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = [s for s in self.sites if s not in feats]
        if missing:
            raise AnomalyError(
                f"features for {', '.join(missing)} are missing; this detector reads {', '.join(self.sites)}"
            )
        out = {}
        for site, det in self.per_site.items():
            if isinstance(det, Translator):
                out[site] = det.score_pair(feats[site], feats[self.sites[self.sites.index(site) - 1]])
            else:
                out[site] = det.score(feats[site])
        return out

    @overload
    def score_features(
        self, feats: dict[str, torch.Tensor], per_site: Literal[False] = False
    ) -> torch.Tensor: ...
    @overload
    def score_features(
        self, feats: dict[str, torch.Tensor], per_site: Literal[True]
    ) -> dict[str, torch.Tensor]: ...
    def score_features(
        self, feats: dict[str, torch.Tensor], per_site: bool = False
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Scores of precomputed features: ``[n]`` combined, or ``{site: [n]}`` raw with ``per_site=True``."""
        raw = self._raw(feats)
        if per_site:
            return raw
        z = [(v - self.norm[s][0]) / self.norm[s][1] for s, v in raw.items()]
        return torch.stack(z).mean(0)

    def score(self, inputs: Any, *, batch_size: int = 32, progress: bool = False) -> torch.Tensor:
        """``Tensor[batch]``: higher = more anomalous. Set-level detectors (spectral, que) score the inputs
        of one call as a set, so pass normal and suspect inputs together."""
        return self.score_features(self.features(inputs, batch_size=batch_size, progress=progress))

    def score_sites(self, inputs: Any, *, batch_size: int = 32) -> dict[str, torch.Tensor]:
        """``{site: Tensor[batch]}``: each site's own (unstandardised) score."""
        return self.score_features(self.features(inputs, batch_size=batch_size), per_site=True)

    # ---- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "detector": self.kind, "sites": self.sites, "reduce": self.reduce,
                "options": self.options, "meta": self.meta}  # fmt: skip

    def save(self, path: str | Path) -> Path:
        """Write ``detector.json`` and ``detector.safetensors`` into the folder ``path``."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {f"norm/{s}": v for s, v in self.norm.items()}
        for site, det in self.per_site.items():
            tensors.update({f"site/{site}/{k}": v.contiguous() for k, v in det.state().items()})
        with atomic_path(path / "detector.safetensors") as tmp:
            save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, str(tmp))
        atomic_write(path / "detector.json", json.dumps(self.to_dict(), indent=1))
        return path

    def __repr__(self) -> str:
        return f"tsi.anomaly.Detector({self.kind}, {len(self.sites)} sites, reduce={self.reduce})"


def load(path: str | Path, model: Model | None = None) -> Detector:
    """Read a detector written by ``Detector.save`` (no pickles); ``model`` binds it for raw inputs."""
    from safetensors.torch import load_file

    path = Path(path)
    cfg_file, weights = path / "detector.json", path / "detector.safetensors"
    if not cfg_file.is_file() or not weights.is_file():
        raise AnomalyError(
            f"no saved detector in {str(path)!r}: expected detector.json and detector.safetensors"
        )
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("format") != FORMAT or cfg.get("detector") not in DETECTORS:
        raise AnomalyError(f"{cfg_file} is not a detector file of format {FORMAT}")
    tensors = load_file(str(weights))
    per_site: dict[str, SiteDetector] = {}
    norm: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if key.startswith("norm/"):
            norm[key[5:]] = value
        else:
            site, name = key[5:].rsplit("/", 1)
            if site not in per_site:
                per_site[site] = DETECTORS[cfg["detector"]](**cfg["options"])
            per_site[site].tensors[name] = value
    ordered = {s: per_site[s] for s in cfg["sites"] if s in per_site}
    return Detector(
        cfg["detector"], cfg["sites"], cfg["reduce"], cfg["options"], ordered, norm, model, cfg["meta"]
    )


def resolve_sites(model: Model | None, data: Any, sites: str | Sequence[str]) -> list[str]:
    if model is not None:
        return site_names(model, sites)
    avail = list(getattr(data, "sites", []) or [])
    wanted = [sites] if isinstance(sites, str) else list(sites)
    out: list[str] = []
    for w in wanted:
        found = match_glob(w, avail) if is_glob(w) else [w] if w in avail else []
        if not found:
            raise AnomalyError(f"no site of the store matches {w!r}; it holds {', '.join(avail)}")
        out.extend(found)
    return list(dict.fromkeys(out))


def fit(model: Model | None, trusted_data: Any, sites: str | Sequence[str] = "blocks.*.resid_post",
        detector: str = "mahalanobis", *, anomalous_data: Any = None, reduce: str = "mean",
        batch_size: int = 32, progress: bool = True, **options: Any) -> Detector:  # fmt: skip
    """Fit ``detector`` on activations of ``sites`` over ``trusted_data``.

    Args:
        model: a ``tsi.Model`` (language or vision; ``None`` when ``trusted_data`` is an activation store).
        trusted_data: texts, token ids ``[n, pos]``, input tensors (images ``[n, C, H, W]``), or a store from
            ``tsi.store.open`` (read sequence by sequence).
        sites: site names or globs.
        detector: ``mahalanobis``, ``spectral``, ``que``, ``sae``, ``probe`` (needs ``anomalous_data``) or
            ``abstraction`` (per-layer translators; needs at least two sites).
        reduce: how a sequence site becomes one vector per input: ``"mean"`` over real tokens or ``"last"``.
        options: passed to the per-site detector (e.g. ``shrinkage=``, ``k=``, ``hidden=``, ``l2=``).
    """
    if reduce not in REDUCE:
        raise AnomalyError(f"unknown reduce {reduce!r}; choose one of {', '.join(REDUCE)}")
    if detector not in DETECTORS:
        raise AnomalyError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    names = resolve_sites(model, trusted_data, sites)
    feats = extract(model, trusted_data, names, reduce, batch_size, progress, desc=f"{detector} fit")
    anomalous = None
    if anomalous_data is not None:
        anomalous = extract(model, anomalous_data, names, reduce, batch_size, progress, desc="anomalous")
    det = Detector.from_features(
        feats, detector, anomalous=anomalous, reduce=reduce, progress=progress, **options
    )
    det.model = model
    return det
