"""Every relative link in README.md and docs/*.md resolves, and every docs page links back to the README."""

from __future__ import annotations

import re
from pathlib import Path

from ._docrun import ROOT, pages

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^\s*```")


def links(page: Path) -> list[str]:
    prose, inside = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            inside = not inside
        elif not inside:  # links inside code blocks are code
            prose.append(line)
    return [m.group(1) for m in _LINK.finditer("\n".join(prose))]


def _relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")


def test_relative_links_resolve():
    broken = []
    for page in pages():
        for target in links(page):
            if _relative(target):
                path = (page.parent / target.split("#", 1)[0]).resolve()
                if not path.exists():
                    broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, "broken links: " + ", ".join(broken)


def test_every_docs_page_links_back_to_the_readme():
    readme = (ROOT / "README.md").resolve()
    lonely = [
        p.name
        for p in pages()
        if p.name != "README.md"
        and not any((p.parent / t.split("#")[0]).resolve() == readme for t in links(p) if _relative(t))
    ]
    assert not lonely, "pages without a link to ../README.md: " + ", ".join(lonely)


def test_every_docs_page_is_linked_from_the_readme():
    targets = {(ROOT / t.split("#")[0]).resolve() for t in links(ROOT / "README.md") if _relative(t)}
    unlinked = [p.name for p in pages() if p.name != "README.md" and p.resolve() not in targets]
    assert not unlinked, "docs pages the README does not link to: " + ", ".join(unlinked)
