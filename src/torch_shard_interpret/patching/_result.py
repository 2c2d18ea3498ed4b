"""PatchResult: the effect of patching each (site, position) or (site, head) cell, and its views."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_path, atomic_write
from ..core._result import jsonable
from ._common import PatchingError

TENSORS_FILE = "patch_result.safetensors"
META_FILE = "patch_result.json"
FORMAT_VERSION = 1


@dataclass
class PatchResult:
    """Effects of patching, one cell per (site, position) or, with ``heads``, per (site, head); with
    ``heads="grid"`` per (site, position, head), so ``effects`` is ``[n_sites, n_positions, n_heads]``.

    Normalisation: ``effects = (patched - baseline) / (target - baseline)``, where the *baseline* is the
    metric of the run being patched and the *target* the metric of the run the activations come from.
    Denoising (run corrupt, patch in clean): baseline = ``corrupt_metric``, target = ``clean_metric``, so 1
    means this one cell restores the clean behaviour fully and 0 means it does nothing. Noising (run clean,
    patch in corrupt): baseline = ``clean_metric``, target = ``corrupt_metric``, so 1 means this one cell
    destroys the clean behaviour fully. ``raw`` keeps ``patched - baseline`` in the metric's own units.
    """

    effects: torch.Tensor
    """``[n_sites, n_columns]`` normalised effects (float32, CPU); ``[n_sites, n_positions, n_heads]`` for the grid."""
    raw: torch.Tensor
    """Same shape: ``patched_metric - baseline_metric`` in metric units (estimated for attribution)."""
    sites: list[str]
    """Row names, e.g. ``blocks.3.resid_pre``."""
    positions: list[list[int]]
    """The positions each column patches (one position per column with ``positions="each"``; in head mode,
    the positions every head column patches; in the grid, those of each position row)."""
    str_tokens: list[str]
    """The clean prompt's tokens."""
    clean_metric: float
    corrupt_metric: float
    direction: str = "denoise"
    """``denoise`` (run corrupt, patch clean in) or ``noise`` (run clean, patch corrupt in)."""
    method: str = "activation"
    """``activation`` (exact), ``attribution`` (gradient estimate) or ``path``."""
    heads: list[int] | None = None
    """Head index of each head column in head mode (and the grid), else None: a key/value head for
    ``attn.k`` / ``attn.v`` under grouped-query attention (see ``head_groups``), else a query head."""
    corrupt_str_tokens: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    """Free-form details: receivers of path patching, number of forwards, batch size..."""
    head_groups: list[list[int]] | None = None
    """The query heads each head column patched together, where that is more than one: under grouped-query
    attention key/value head ``g`` of ``attn.k`` / ``attn.v`` feeds query heads ``g*G .. g*G+G-1``
    (``G = n_heads // n_kv_heads``), and all of them get the patch. None where each column is one head."""

    # ---- views --------------------------------------------------------------------------------
    @property
    def baseline_metric(self) -> float:
        """The metric of the unpatched run (corrupt for denoising, clean for noising)."""
        return self.corrupt_metric if self.direction == "denoise" else self.clean_metric

    @property
    def target_metric(self) -> float:
        """The metric of the run the patched activations come from."""
        return self.clean_metric if self.direction == "denoise" else self.corrupt_metric

    @property
    def patched_metric(self) -> torch.Tensor:
        """``[n_sites, n_columns]`` metric of each patched run (estimated for attribution patching)."""
        return self.raw + self.baseline_metric

    @property
    def is_grid(self) -> bool:
        """Whether ``effects`` is the ``[n_sites, n_positions, n_heads]`` grid (``heads="grid"``)."""
        return self.effects.ndim == 3

    @property
    def head_labels(self) -> list[str]:
        """A label per head column: ``H3``, or ``KV1 (H2-H3)`` for a key/value head and the query heads it
        feeds (grouped-query attention); empty without heads."""
        if self.heads is None:
            return []
        if self.head_groups is None:
            return [f"H{h}" for h in self.heads]
        return [f"KV{h} (H{g[0]}-H{g[-1]})" for h, g in zip(self.heads, self.head_groups, strict=True)]

    @property
    def position_labels(self) -> list[str]:
        """A label per position column (the grid's position rows): the token(s) there, with the corrupt
        token after a slash where it differs (``' Mary'/' John'``)."""
        return [self._pos_label(p) for p in self.positions]

    @property
    def column_labels(self) -> list[str]:
        """A short label per column of ``effects.flatten(1)``: ``head_labels`` in head mode, else the
        ``position_labels``; for the grid, ``"position · head"`` in row-major order."""
        if self.is_grid:
            return [f"{p} · {h}" for p in self.position_labels for h in self.head_labels]
        if self.heads is not None:
            return self.head_labels
        return self.position_labels

    def _pos_label(self, ps: list[int]) -> str:
        if len(ps) == len(self.str_tokens) and len(ps) > 1:
            return "all positions"
        parts = []
        for p in ps:
            tok = self.str_tokens[p] if p < len(self.str_tokens) else str(p)
            bad = self.corrupt_str_tokens[p] if p < len(self.corrupt_str_tokens) else tok
            parts.append(f"{tok!r}" if bad == tok else f"{tok!r}/{bad!r}")
        return f"{ps[0]}:" + "+".join(parts) if len(ps) == 1 else "+".join(parts)

    def top(self, k: int = 10) -> list[tuple[str, str, float, float]]:
        """The ``k`` cells with the largest ``|effect|``: ``(site, column label, effect, raw)``."""
        flat = self.effects.flatten().abs()
        flat = torch.where(torch.isnan(flat), torch.zeros_like(flat), flat)
        order = flat.argsort(descending=True)[:k].tolist()
        n_cols = self.effects[0].numel() if len(self.effects) else 1
        labels = self.column_labels
        return [
            (
                self.sites[i // n_cols],
                labels[i % n_cols],
                float(self.effects.flatten()[i]),
                float(self.raw.flatten()[i]),
            )
            for i in order
        ]

    def correlation(self, other: PatchResult | torch.Tensor) -> float:
        """Pearson correlation of ``effects`` with ``other``'s over all cells (e.g. attribution vs exact)."""
        b = other.effects if isinstance(other, PatchResult) else torch.as_tensor(other)
        a = self.effects
        if a.shape != b.shape:
            raise PatchingError(
                f"cannot correlate effects of shape {list(a.shape)} with shape {list(b.shape)}; patch the same "
                "sites and positions (or heads) in both"
            )
        x, y = a.flatten().double(), b.flatten().double().cpu()
        x, y = x - x.mean(), y - y.mean()
        denom = float(x.norm() * y.norm())
        return float((x @ y) / denom) if denom > 0 else math.nan

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.effects.shape))
        return (
            f"PatchResult({self.method}, {self.direction}, {shape} cells, clean_metric={self.clean_metric:.4g}, "
            f"corrupt_metric={self.corrupt_metric:.4g})"
        )

    # ---- JSON and HTML --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: every field (``effects`` and ``raw`` as ``[n_sites][n_columns]`` lists, or
        ``[n_sites][n_positions][n_heads]`` for the grid; NaN as None), the ``columns`` labels (for the grid,
        ``position_labels`` and ``head_labels``), the ``dims`` and a sentence on the ``normalisation``."""
        target = "clean" if self.direction == "denoise" else "corrupt"
        base = "corrupt" if self.direction == "denoise" else "clean"
        return jsonable({
            "method": self.method, "direction": self.direction, "sites": self.sites,
            "columns": self.column_labels, "positions": self.positions, "heads": self.heads,
            "effects": self.effects, "raw": self.raw, "clean_metric": self.clean_metric,
            "corrupt_metric": self.corrupt_metric, "str_tokens": self.str_tokens,
            "corrupt_str_tokens": self.corrupt_str_tokens, "info": self.info, "head_groups": self.head_groups,
            "head_labels": self.head_labels, "position_labels": self.position_labels, "dims": self._dims(),
            "normalisation": f"(patched - {base}) / ({target} - {base}): 1 = this cell alone "
            + ("restores the clean behaviour" if self.direction == "denoise" else "destroys the clean behaviour"),
        })  # fmt: skip

    def _dims(self) -> list[str]:
        if self.is_grid:
            return ["site", "position", "head"]
        return ["site", "head" if self.heads is not None else "position"]

    def to_html(self, title: str | None = None) -> str:
        """A self-contained HTML page: the heatmap of ``effects`` (sites x columns; blue negative, red
        positive), hover text with the raw change, and the top cells. Inline SVG and CSS, no script or URL."""
        from .. import _render as svg
        from .._render import esc, standalone

        eff = self.effects
        finite = eff[torch.isfinite(eff)]
        vmax = float(finite.abs().max()) if finite.numel() else 1.0
        vmax = vmax or 1.0
        if self.is_grid:  # one heatmap per site: heads (rows) x positions (columns)
            grid = "".join(
                f"<h3>{esc(site)}</h3>"
                + self._heatmap(
                    eff[i].T, self.raw[i].T, vmax, [f"{site} · {h}" for h in self.head_labels],
                    self.head_labels, self.position_labels, ("position", "head"),
                )
                for i, site in enumerate(self.sites)
            )  # fmt: skip
        else:
            heads = self.heads is not None
            grid = self._heatmap(
                eff, self.raw, vmax, self.sites, self.sites, self.column_labels,
                ("head" if heads else "position", "site"),
            )  # fmt: skip
        legend = svg.colorbar(
            lambda t: svg.diverging(2 * t - 1, 1.0), lo=-vmax, hi=vmax, label="normalised effect",
            ticks=[(-vmax, f"{-vmax:.2f}"), (0, "0"), (vmax, f"+{vmax:.2f}")], width=220,
        )  # fmt: skip
        what = {
            "activation": "Activation patching",
            "attribution": "Attribution patching (gradient estimate)",
            "path": "Path patching",
        }.get(self.method, self.method)
        how = (
            "run the corrupt prompt and patch in clean activations; 1 = the clean metric is fully restored"
            if self.direction == "denoise"
            else "run the clean prompt and patch in corrupt activations; 1 = the behaviour is fully destroyed"
        )
        rows = "".join(
            f"<tr><td>{esc(s)}</td><td class='tokcell'>{esc(c)}</td><td class='num'>{e:+.3f}</td>"
            f"<td class='num'>{r:+.3f}</td></tr>"
            for s, c, e, r in self.top(10)
        )
        prompt = "".join(esc(t) for t in self.str_tokens)
        body = (
            f"<header><h1>{esc(title or what)}</h1><div class='meta'>{esc(self.direction)}: {esc(how)}</div></header>"
            f"<div class='prompt'>clean: {prompt}"
            + (
                f"<br>corrupt: {''.join(esc(t) for t in self.corrupt_str_tokens)}"
                if self.corrupt_str_tokens
                else ""
            )
            + "</div><section><div class='kv'>"
            f"<div><span>clean metric</span><b class='big'>{self.clean_metric:.4f}</b></div>"
            f"<div><span>corrupt metric</span><b class='big'>{self.corrupt_metric:.4f}</b></div>"
            f"<div><span>cells</span><b class='big'>{' × '.join(map(str, eff.shape))}</b></div></div>"
            f"<p class='how'>effect = (patched − baseline) / (target − baseline); hover a cell for the raw change."
            f"</p><div>{legend}</div><div class='scroll'>{grid}</div></section>"
            "<section><h2>Top cells</h2><table class='t'><tr><th>site</th><th>column</th>"
            f"<th class='num'>effect</th><th class='num'>raw</th></tr>{rows}</table></section>"
        )
        return standalone(title or what, body)

    def _heatmap(
        self,
        eff: torch.Tensor,
        raw: torch.Tensor,
        vmax: float,
        names: list[str],
        row_labels: list[str],
        col_labels: list[str],
        axes: tuple[str, str],
    ) -> str:
        """One SVG heatmap of a 2-D slice ``eff`` / ``raw`` (``names``: each row's name in the hover text)."""
        from .. import _render as svg

        n_rows, n_cols = eff.shape
        cells = [[(float(eff[i, j]), float(raw[i, j])) for j in range(n_cols)] for i in range(n_rows)]
        heads = axes[0] == "head"
        return svg.heatmap(
            [[svg.diverging(e, vmax) for e, _ in row] for row in cells],
            row_labels=row_labels,
            col_labels=[svg.show_token(c, 24) for c in col_labels],
            titles=[
                [
                    f"{names[i]} · {col_labels[j]}\neffect {e:+.4f}\nraw {r:+.4f} (metric {r + self.baseline_metric:.4f})"
                    for j, (e, r) in enumerate(row)
                ]
                for i, row in enumerate(cells)
            ],
            cell_text=[[f"{e:.2f}" if abs(e) >= 0.2 * vmax else "" for e, _ in row] for row in cells],
            cell_w=36 if heads else 40, cell_h=16, font=10, x_title=axes[0], y_title=axes[1],
            rotate_cols=not heads or self.head_groups is not None,
        )  # fmt: skip

    def _repr_html_(self) -> str:
        return self.to_html()

    # ---- files ----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path/patch_result.safetensors`` (effects, raw) and ``path/patch_result.json`` (the rest),
        each atomically. Returns the directory."""
        from safetensors.torch import save_file

        out = Path(path).expanduser()
        if out.exists() and not out.is_dir():
            raise PatchingError(f"cannot save to {str(out)!r}: it is a file; give a directory")
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "sites": self.sites,
            "positions": self.positions,
            "str_tokens": self.str_tokens,
            "corrupt_str_tokens": self.corrupt_str_tokens,
            "clean_metric": self.clean_metric,
            "corrupt_metric": self.corrupt_metric,
            "direction": self.direction,
            "method": self.method,
            "heads": self.heads,
            "head_groups": self.head_groups,
            "info": jsonable(self.info),
        }
        tensors = {"effects": self.effects.contiguous().cpu(), "raw": self.raw.contiguous().cpu()}
        with atomic_path(out / TENSORS_FILE, prefix=f".{TENSORS_FILE}-") as tmp:
            save_file(tensors, str(tmp))
        atomic_write(out / META_FILE, json.dumps(meta, indent=1), prefix=f".{META_FILE}-")
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PatchResult:
        """Read a result written by ``save``."""
        from safetensors.torch import load_file

        src = Path(path).expanduser()
        if not (src / META_FILE).is_file() or not (src / TENSORS_FILE).is_file():
            raise PatchingError(f"{str(src)!r} holds no saved PatchResult ({META_FILE} and {TENSORS_FILE})")
        meta = json.loads((src / META_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(src / TENSORS_FILE))
        meta.pop("format_version", None)
        return cls(effects=tensors["effects"], raw=tensors["raw"], **meta)
