"""Every Python and shell block of README.md and docs/*.md runs as written, and stated output is true.

One test per page: its blocks run in order in one fresh subprocess (see ``_docrun`` for the markers that
keep a block from running and for how stated output is written and checked).
"""

from __future__ import annotations

import time

import pytest

from ._docrun import ROOT, check_output, pages, parse, run_page

PAGE_TIMEOUT = 240  # seconds; the slowest page takes about a quarter of that on 2 busy cores

PAGES = pages()


@pytest.mark.timeout(PAGE_TIMEOUT + 30)
@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_page_runs_as_written(page, capsys):
    start = time.perf_counter()
    result = run_page(page, timeout=PAGE_TIMEOUT)
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n[docs] {page.relative_to(ROOT).as_posix()}: {len(result.blocks)} blocks in {elapsed:.1f} s")
    assert result.returncode == 0, f"{result.stderr[-6000:]}\n--- stdout ---\n{result.stdout[-3000:]}"
    assert len(result.segments) == len(result.blocks)
    for block, out in zip(result.blocks, result.segments, strict=True):
        if block.expected is not None:
            problem = check_output(block.expected, out)
            assert problem is None, f"{block.page}:{block.line}: {problem}"


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_page_has_a_runnable_example(page):
    assert any(b.runs for b in parse(page)), f"{page.name} has no block that the docs test runs"


def test_output_check_matches_in_order_with_ellipsis():
    out = "loss 0.31\nL0 8.0, FVU 0.12\ndone"
    assert check_output("L0 8.0, FVU ...\ndone", out) is None
    assert check_output("done\nL0 8.0", out) is not None  # out of order
    assert check_output("FVU 0.99", out) is not None


def test_markers_keep_blocks_from_running(tmp_path, monkeypatch):
    from . import _docrun

    page = tmp_path / "page.md"
    page.write_text(
        "```python gpu\nraise SystemExit(1)\n```\n```bash torchrun\nfalse\n```\n"
        "```text synopsis\ntsi x [--y]\n```\n```console\n$ echo hi \\\n  there\nhi there\n```\n"
    )
    monkeypatch.setattr(_docrun, "ROOT", tmp_path)
    blocks = _docrun.parse(page)
    assert [b.runs for b in blocks] == [False, False, False, True]
    assert blocks[3].commands == ["echo hi \\\n  there"] and blocks[3].expected == "hi there"
    result = _docrun.run_page(page, timeout=60)
    assert result.returncode == 0, result.stderr
    assert check_output(blocks[3].expected, result.segments[0]) is None


def test_a_failing_block_names_its_page_and_line(tmp_path, monkeypatch):
    from . import _docrun

    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nx = 1\n```\n\n```python\nassert x == 2\n```\n")
    monkeypatch.setattr(_docrun, "ROOT", tmp_path)
    result = _docrun.run_page(page, timeout=60)
    assert result.returncode != 0
    assert "page.md:8 (python block)" in result.stderr
    assert 'File "page.md", line 8' in result.stderr


def test_a_bare_fence_is_refused(tmp_path, monkeypatch):
    from . import _docrun

    page = tmp_path / "page.md"
    page.write_text("```\ntsi lens [--tuned PATH]\n```\n")
    monkeypatch.setattr(_docrun, "ROOT", tmp_path)
    with pytest.raises(ValueError, match="without a language"):
        _docrun.parse(page)
