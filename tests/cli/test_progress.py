"""Every subcommand that does long work shows progress through one helper (``cli/_common.progress_for``).

Off a terminal (here: pytest's captured stderr) that progress is the library's plain line, ``desc: n/total unit
(pct%), t s`` (``desc: n unit, t s`` with no known total), never carriage returns; ``--no-progress`` hides it. The commands run on a tiny random LLaMA.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import torch

import torch_shard_interpret as tsi
from _cli import preload
from torch_shard_interpret.cli import _common
from torch_shard_interpret.cli.main import build_parser, iter_parsers, main
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

CLI = Path(_common.__file__).parent
LONG_WORK = {
    "report", "lens", "patch", "probe", "harvest", "train-sae", "bench", "anomaly fit", "diff", "circuit",
}  # fmt: skip
# ``desc: n/total unit (pct%), t s`` or, with no known total, ``desc: n unit, t s``
LINE = re.compile(r"^[\w .-]+: \d+(\.\d+)?(/\d+(\.\d+)? \w+ \(\d+%\)| \w+), \d+ s")
TEXTS = [
    f"the {a} was very {b} and the house was red ." for a in ("cat", "dog", "car") for b in ("good", "bad")
]
PAIR = ["--clean", "when mary and john went to the store , john gave a drink to",
        "--corrupt", "when john and mary went to the store , mary gave a drink to",
        "--target", "mary", "--baseline", "john"]  # fmt: skip


def test_the_long_subcommands_and_only_they_take_no_progress_from_the_helper():
    helper = argparse.ArgumentParser()
    _common.add_progress(helper)
    expected_help = helper._option_string_actions["--no-progress"].help
    having = {}
    for name, parser in iter_parsers(build_parser()):
        action = parser._option_string_actions.get("--no-progress")
        if action is not None:
            having[name] = action.help
    assert set(having) == LONG_WORK
    assert set(having.values()) == {expected_help}


def test_no_subcommand_decides_about_progress_by_itself():
    """No ``isatty`` test and no other ``progress=`` value than the helper's (or ``False``) in cli/."""
    for path in sorted(CLI.glob("*.py")):
        if path.name == "_common.py":
            continue
        src = path.read_text(encoding="utf-8")
        assert "isatty" not in src and "no_progress" not in src, path.name
        values = set(re.findall(r"\bprogress=(progress_for\(args\)|\w+)", src))
        assert values <= {"progress_for(args)", "False"}, (path.name, values)


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    preload(monkeypatch, "tiny", tsi.wrap(tiny_hf_model("llama", seed=1), tiny_tokenizer()))
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS)]
    (tmp_path / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    torch.save(torch.randn(256, 16, generator=torch.Generator().manual_seed(0)), tmp_path / "acts.pt")
    return tmp_path


# Each command as words; {d} is the test's folder, {pair} the clean/corrupt prompts and their answers.
COMMANDS = {
    "lens --train": "lens --model tiny --train {d}/texts.txt --steps 3 --save {d}/out",
    "patch": "patch --model tiny {pair} --sites blocks.*.resid_pre --out {d}/out",
    "probe": "probe --model tiny --data {d}/labels.jsonl --sites blocks.0.resid_post",
    "harvest": "harvest --model tiny --data {d}/texts.txt --sites blocks.0.resid_post --context 8 --out {d}/out",
    "train-sae": "train-sae --acts {d}/acts.pt --d-sae 32 --k 4 --steps 5 --batch-size 64 --out {d}/out",
    "anomaly fit": "anomaly fit --model tiny --data {d}/texts.txt --sites blocks.0.resid_post --out {d}/out",
    "circuit": "circuit --model tiny {pair} --method eap --no-curve --out {d}/out",
    "diff": "diff tiny tiny --data {d}/texts.txt --steps 3 --k 4",
}


def _argv(name: str, folder: Path) -> list[str]:
    words = COMMANDS[name].split()
    return [part for w in words for part in (PAIR if w == "{pair}" else [w.replace("{d}", str(folder))])]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_off_a_terminal_progress_is_plain_lines_and_no_progress_hides_them(name, inputs, capsys):
    for run, hidden in (("a", False), ("b", True)):
        argv = _argv(name, inputs / run)
        (inputs / run).mkdir()
        for f in ("texts.txt", "labels.jsonl", "acts.pt"):
            (inputs / run / f).write_bytes((inputs / f).read_bytes())
        assert main(argv + (["--no-progress"] if hidden else [])) == 0, capsys.readouterr().err
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if LINE.match(line)]
        assert "\r" not in err
        if hidden:
            assert lines == [], err
        else:
            assert lines, f"`tsi {name}` printed no progress line off a terminal: {err!r}"
