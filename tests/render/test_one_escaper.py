"""HTML is written in one style: only the rendering primitives in ``_render/`` escape text themselves."""

from __future__ import annotations

import re
from pathlib import Path

import torch_shard_interpret as tsi

PKG = Path(tsi.__file__).parent
_ESCAPE = re.compile(r"\bhtml\.escape\b|^\s*from html import|^\s*import html\b", re.MULTILINE)


def _offenders(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.py")
        if p.relative_to(root).parts[0] != "_render" and _ESCAPE.search(p.read_text(encoding="utf-8"))
    )


def test_html_escape_only_in_the_primitives():
    assert _offenders(PKG) == [], "escape with torch_shard_interpret._render.esc instead"


def test_the_grep_sees_every_spelling(tmp_path):
    (tmp_path / "_render").mkdir()
    (tmp_path / "_render" / "_svg.py").write_text("from html import escape\n")
    (tmp_path / "a.py").write_text("import html\nx = html.escape('<')\n")
    (tmp_path / "b.py").write_text("def f():\n    from html import escape\n")
    (tmp_path / "c.py").write_text("import htmlmin  # another package\n")
    assert _offenders(tmp_path) == ["a.py", "b.py"]
