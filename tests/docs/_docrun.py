"""Run the code blocks of README.md and docs/*.md as a reader would paste them.

Every fenced block is classified by its info string (the words after the opening fence):

- ```python: run, in one Python interpreter per page, so a later block sees the names of earlier ones.
- ```bash / ```sh: run with ``bash -e -o pipefail`` (``tsi`` and ``jsi`` from this interpreter's bin
  folder first on PATH), in the same temporary working folder as the page's Python blocks.
- ```console: the lines starting with ``$ `` are run as shell commands (a trailing ``\\`` continues one);
  the other lines are the output the page states, and are checked (see below).
- ```output: the output the page states for the block just above it; checked.
- Not run: a block whose info string also holds ``gpu`` (needs a CUDA device), ``torchrun`` (needs
  several processes), or ``setup`` (builds or installs the environment this test runs in: ``make``,
  ``pip``, the test suite itself); ```text blocks (``text synopsis`` for command synopses with
  ``[--optional]`` parts and ``a|b`` choices, which are not copyable commands); ```json samples.
- Every block must name its language: a bare fence is an error (say what the block is).

Stated output is checked line by line: every non-empty line of it must appear, in order, within the
block's standard output; ``...`` inside a line matches any text, and a line that is only ``...`` matches
nothing in particular. So print rounded numbers (``f"{x:.2f}"``) where the page states them.

One page is one fresh subprocess (``python -c DRIVER page.json``), started in a new temporary folder; the
blocks run in page order and the first failure stops the page, naming its file and line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_LANGS = {"python", "bash", "sh", "console"}
QUIET_LANGS = {"text", "json", "output", "toml", "html", "jsonl"}
SKIP_MARKERS = {"gpu", "torchrun", "setup"}
MARKER = "@@tsi-docs-block {}@@"
_FENCE = re.compile(r"^(\s*)(`{3,})(.*)$")


@dataclass
class Block:
    page: str  # path relative to the checkout root
    line: int  # 1-based line of the first code line
    lang: str
    markers: list[str]
    code: str
    expected: str | None = None  # stated output (a following ```output block, or console output lines)
    commands: list[str] = field(default_factory=list)  # console blocks: the commands

    @property
    def runs(self) -> bool:
        return self.lang in RUN_LANGS and not SKIP_MARKERS.intersection(self.markers)


def pages() -> list[Path]:
    """README.md and every docs/*.md page."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def parse(path: Path) -> list[Block]:
    """Every fenced block of one page, with the output blocks folded into the block above them."""
    text = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(ROOT).as_posix()
    blocks: list[Block] = []
    i = 0
    while i < len(text):
        m = _FENCE.match(text[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.group(1), m.group(2), m.group(3).strip()
        start = i + 1
        j = start
        while j < len(text) and not text[j].strip().startswith(fence):
            j += 1
        if j == len(text):
            raise ValueError(f"{rel}:{i + 1}: a code fence is never closed")
        body = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in text[start:j])
        words = info.split()
        if not words:
            raise ValueError(
                f"{rel}:{i + 1}: a code block without a language; write ```python, ```bash, ```text synopsis, ..."
            )
        lang, markers = words[0], words[1:]
        if lang == "output":
            if not blocks or not blocks[-1].runs or blocks[-1].lang == "console":
                raise ValueError(f"{rel}:{i + 1}: an ```output block must follow a block that runs")
            blocks[-1].expected = body
        else:
            block = Block(rel, start + 1, lang, markers, body)
            if lang == "console":
                _split_console(block)
            blocks.append(block)
        i = j + 1
    return blocks


def _split_console(block: Block) -> None:
    commands, expected, current = [], [], None
    for line in block.code.splitlines():
        if current is not None:
            current += "\n" + line
        elif line.startswith("$ "):
            current = line[2:]
        else:
            expected.append(line)
            continue
        if not current.endswith("\\"):
            commands.append(current)
            current = None
    block.commands = commands
    block.code = "\n".join(commands)
    block.expected = "\n".join(expected) if any(e.strip() for e in expected) else None


def check_output(expected: str, actual: str) -> str | None:
    """None when every stated line appears in order in ``actual``, else what was missing."""
    lines = actual.splitlines()
    at = 0
    for want in expected.splitlines():
        want = want.strip()
        if not want or want == "...":
            continue
        pattern = re.compile(".*?".join(re.escape(part) for part in want.split("...")))
        while at < len(lines) and not pattern.search(lines[at]):
            at += 1
        if at == len(lines):
            return f"stated output line {want!r} not found (in order) in:\n{actual}"
        at += 1
    return None


# The page driver: runs in the fresh subprocess, reads the blocks from a JSON file (argv[1]).
DRIVER = r"""
import json, os, subprocess, sys, traceback
blocks = json.load(open(sys.argv[1]))
env = dict(os.environ)
scope = {"__name__": "__main__"}
for n, b in enumerate(blocks):
    sys.stdout.flush(); sys.stderr.flush()
    print("\n" + MARKER.format(n), flush=True)
    where = f"{b['page']}:{b['line']} ({b['lang']} block)"
    try:
        if b["lang"] == "python":
            code = compile("\n" * (b["line"] - 1) + b["code"] + "\n", b["page"], "exec")
            exec(code, scope)
        else:
            sys.stdout.flush()
            r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", b["code"]], env=env)
            if r.returncode:
                raise SystemExit(f"exit status {r.returncode}")
    except BaseException as exc:
        sys.stdout.flush()
        traceback.print_exc()
        print(f"\nDOCS BLOCK FAILED: {where}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(3)
sys.stdout.flush()
""".replace("MARKER", repr(MARKER))


@dataclass
class PageResult:
    returncode: int
    stdout: str
    stderr: str
    segments: list[str]  # stdout of each run block, in order
    blocks: list[Block]


def run_page(path: Path, timeout: float) -> PageResult:
    """Run every runnable block of one page in a fresh subprocess, in a new temporary folder."""
    blocks = [b for b in parse(path) if b.runs]
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    src = [str(ROOT / "src"), str(ROOT / "jax-shard-interpret" / "src")]
    env["PYTHONPATH"] = os.pathsep.join(src + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TSI_DOCS_TEST", "1")
    with tempfile.TemporaryDirectory(prefix="tsi-docs-") as tmp:
        spec = Path(tmp) / ".blocks.json"
        spec.write_text(json.dumps([asdict(b) for b in blocks]))
        work = Path(tmp) / "work"
        work.mkdir()
        proc = subprocess.run(
            [sys.executable, "-c", DRIVER, str(spec)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    parts = re.split(r"\n?" + re.escape(MARKER).replace(r"\{\}", r"\d+") + r"\n", proc.stdout)
    return PageResult(proc.returncode, proc.stdout, proc.stderr, parts[1:], blocks)
