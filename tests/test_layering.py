"""Imports point down the layers, and every public subpackage is reachable as ``tsi.X``.

Layers (low to high): leaves ``_render`` / ``_progress`` / ``_io`` (import nothing of ours) < ``core`` <
``adapters`` / ``distributed`` < techniques (and ``loading``, ``testing``) < ``report`` < ``cli`` / ``serve``.
Every ``import`` statement is read with ``ast``, including those inside functions.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

import torch_shard_interpret as tsi

PKG = Path(tsi.__file__).parent
LEAVES = {"_render", "_progress", "_io"}
RANK = {"core": 1, "adapters": 2, "distributed": 2, "report": 4, "cli": 5, "serve": 5, "__main__": 5}
TECHNIQUE = 3  # any other subpackage: lens, attribution, patching, steering, probes, store, sae, loading, ...

# Imports that point up today, each with the issue that removes it. The test fails when a new one appears
# AND when one of these is gone (then delete its line), so this list only ever shrinks.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _rank(top: str) -> int:
    if top in LEAVES:
        return 0
    return RANK.get(top, TECHNIQUE)


def _targets(path: Path) -> set[str]:
    """The top-level subpackages of ours that ``path`` imports (relative or absolute, any depth)."""
    rel = path.relative_to(PKG)
    here = rel.parts[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[: len(here) - (node.level - 1)]) if node.level > 1 else list(here)
                mod = [*base, *(node.module.split(".") if node.module else [])]
                if not mod:  # `from .. import x` at the top: x is a subpackage
                    out.update(a.name for a in node.names)
                    continue
                out.add(mod[0])
                continue
            names = [node.module or ""]
        for n in names:
            parts = n.split(".")
            if parts[0] == "torch_shard_interpret":
                out.add(parts[1] if len(parts) > 1 else "core")  # the bare package re-exports the core
    return out


def _violations() -> set[tuple[str, str]]:
    found = set()
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if len(rel.parts) == 1 and rel.name == "__init__.py":
            continue  # the package root re-exports everything lazily
        me = rel.parts[0].removesuffix(".py")
        for target in _targets(path) - {me}:
            if _rank(me) == 0 or _rank(target) > _rank(me):
                found.add((rel.as_posix(), target))
    return found


def test_imports_point_down():
    found = _violations()
    new = found - KNOWN_UPWARD
    assert not new, f"imports that point up the layers: {sorted(new)}"


def test_known_upward_imports_are_still_real():
    gone = KNOWN_UPWARD - _violations()
    assert not gone, f"these upward imports are gone: delete them from KNOWN_UPWARD: {sorted(gone)}"


def test_the_checker_sees_function_level_imports(tmp_path, monkeypatch):
    fake = tmp_path / "torch_shard_interpret"
    (fake / "core").mkdir(parents=True)
    (fake / "core" / "_x.py").write_text("def f():\n    from ..report import write_report\n")
    (fake / "_render.py").write_text("import torch_shard_interpret.lens\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", fake)
    assert _violations() == {("core/_x.py", "report"), ("_render.py", "lens")}


def _public_subpackages() -> list[str]:
    return sorted(
        p.name
        for p in PKG.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and not p.name.startswith("_")
    )


@pytest.mark.parametrize("name", [n for n in _public_subpackages() if n != "cli"])
def test_subpackage_reachable_as_attribute(name):
    assert getattr(tsi, name) is importlib.import_module(f"torch_shard_interpret.{name}")
