"""The core depends on torch and nothing of ours above it: every import under ``core/`` is the standard
library, torch, or another module of ``core/`` (checked on the source, including imports inside functions)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import torch_shard_interpret.core as core

CORE = Path(core.__file__).parent
ALLOWED_THIRD_PARTY = {"torch", "mutmut"}  # mutmut: its trampolines, under `make mutate` only


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(level, module)`` for every import in ``path``; level > 0 is a relative import."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.extend((0, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or ""))
    return out


def test_core_imports_point_nowhere_above_it():
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 10  # the walk really sees the core's modules
    bad = []
    for path in files:
        for level, module in _imports(path):
            if level == 1:  # from .x import y: inside core
                continue
            if level > 1:
                bad.append(f"{path.name}: from {'.' * level}{module}")
                continue
            top = module.split(".")[0]
            if top in ALLOWED_THIRD_PARTY or top in sys.stdlib_module_names or top == "__future__":
                continue
            bad.append(f"{path.name}: import {module}")
    assert bad == [], "the core imports from above it: " + "; ".join(bad)


def test_the_check_sees_a_function_level_import(tmp_path):
    # The walk must find an upward import hidden inside a function, as the old core had.
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ..adapters import adapter_for\n    import numpy\n")
    assert _imports(probe) == [(2, "adapters"), (0, "numpy")]


def test_adapters_import_only_core_and_each_other():
    import torch_shard_interpret.adapters as adapters

    bad = []
    for path in sorted(Path(adapters.__file__).parent.glob("*.py")):
        for level, module in _imports(path):
            if level == 2 and module.split(".")[0] != "core":
                bad.append(f"{path.name}: from ..{module}")
            elif level > 2:
                bad.append(f"{path.name}: from {'.' * level}{module}")
    assert bad == []
