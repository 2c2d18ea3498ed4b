"""No subcommand destroys data (issue 18): one output rule, tested for every subcommand that writes.

The table ``WRITERS`` has one entry per output option of every subcommand; ``test_every_writer_is_in_the_table``
derives the list from the parsers themselves, so a new subcommand (or a new ``--out``-like option) fails it
until it is declared with ``add_output`` and given an entry here.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.cli import _output
from torch_shard_interpret.cli.main import build_parser, iter_parsers, main
from torch_shard_interpret.core import InputError

BOOM = "boom: the injected failure after the output check"
TXT, JSONL, ACTS, IMAGE, NO_DETECTOR = "data.txt", "data.jsonl", "acts.pt", "bad.png", "no-detector"

# (subcommand, dest) -> (argv with {out} and {in}, kind). {in} is the value of an input option: by default a
# model name that fails to load (or another input that fails once read), and in the overlap tests a path.
PAIR = ["--clean", "a b", "--corrupt", "a c", "--target", " b", "--baseline", " c"]
WRITERS: dict[tuple[str, str], tuple[list[str], str]] = {
    ("report", "out"): (["report", "hello world", "--model", "{in}", "--out", "{out}"], "dir"),
    ("lens", "out"): (["lens", "hello world", "--model", "{in}", "--out", "{out}"], "dir"),
    ("lens", "save"): (["lens", "--train", "{txt}", "--model", "{in}", "--save", "{out}"], "dir"),
    ("attribute", "out"): (["attribute", "hello world", "--model", "{in}", "--out", "{out}"], "dir"),
    ("patch", "out"): (["patch", "--model", "{in}", *PAIR, "--out", "{out}"], "dir"),
    ("circuit", "out"): (["circuit", "--model", "{in}", *PAIR, "--out", "{out}"], "dir"),
    ("harvest", "out"): (
        ["harvest", "--model", "{in}", "--data", "{txt}", "--sites", "x", "--out", "{out}"],
        "dir",
    ),
    ("train-sae", "out"): (["train-sae", "--acts", "{in}", "--out", "{out}", "--no-progress"], "dir"),
    ("train-sae", "checkpoint_dir"): (
        ["train-sae", "--acts", "{in}", "--checkpoint-dir", "{out}", "--out", "{other}", "--no-progress"],
        "state",
    ),
    ("bench", "out"): (["bench", "--quick", "--no-progress", "--out", "{out}"], "dir"),
    ("vision-report", "out"): (["vision-report", "{image}", "--model", "{in}", "--out", "{out}"], "dir"),
    ("anomaly fit", "out"): (
        ["anomaly", "fit", "--model", "{in}", "--data", "{txt}", "--out", "{out}"],
        "dir",
    ),
    ("diff", "out"): (["diff", "{in}", "{in}", "--data", "{txt}", "--out", "{out}", "--steps", "0"], "dir"),
    ("steer", "save"): (
        ["steer", "--model", "{in}", "--positive", "a", "--negative", "b", "--save", "{out}"],
        "file",
    ),
    ("probe", "html"): (["probe", "--model", "{in}", "--data", "{jsonl}", "--html", "{out}"], "file"),
    ("anomaly score", "json"): (["anomaly", "score", "{nodet}", "--data", "{in}", "--json", "{out}"], "file"),
}
DEFAULT_IN = {
    ("train-sae", "out"): "{acts}",
    ("train-sae", "checkpoint_dir"): "{acts}",
    ("anomaly score", "json"): "{txt}",
}
NO_INPUT = {("bench", "out")}  # reads nothing from disk
OUTPUT_LIKE = re.compile(r"^--(out|save|html|json|output|checkpoint-dir|write|dest)$")


def _writers() -> set[tuple[str, str]]:
    return {
        (name, dest)
        for name, parser in iter_parsers(build_parser())
        for dest in _output.declared_outputs(parser)
    }


def test_every_writer_is_in_the_table():
    assert _writers() == set(WRITERS)
    for name, parser in iter_parsers(build_parser()):
        declared = _output.declared_outputs(parser)
        for action in parser._actions:
            writes = any(OUTPUT_LIKE.match(o) for o in action.option_strings) and action.nargs != 0
            assert not writes or action.dest in declared, (
                f"`tsi {name} {action.option_strings[0]}` is not declared"
            )
        if any(kind != "state" for kind in declared.values()):
            assert "--overwrite" in parser._option_string_actions, name


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Input files, a model name whose loading fails, and the bench run failing likewise."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / TXT).write_text("one text\nanother text\n")
    (inputs / JSONL).write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n')
    torch.save(torch.zeros(5), inputs / ACTS)  # 1-D: train-sae refuses it after the output check
    (inputs / IMAGE).write_bytes(b"not an image")

    def boom(*args, **kwargs):
        raise InputError(BOOM)

    monkeypatch.setattr(tsi, "load", boom)
    import torch_shard_interpret.bench as bench

    monkeypatch.setattr(bench, "run", boom)
    return tmp_path


def _argv(key, env, out, inp=None, other=None):
    template, _ = WRITERS[key]
    inputs = env / "inputs"
    values = {
        "txt": str(inputs / TXT), "jsonl": str(inputs / JSONL), "acts": str(inputs / ACTS),
        "image": str(inputs / IMAGE), "nodet": str(env / NO_DETECTOR), "other": str(other or env / "other"),
    }  # fmt: skip
    values["in"] = inp if inp is not None else DEFAULT_IN.get(key, "boom-model").format(**values)
    values["out"] = str(out)
    return [part.format(**values) for part in template]


def _make_output(key, env) -> Path:
    """An existing, non-empty output of the entry's kind, holding a file that must survive."""
    kind = WRITERS[key][1]
    if kind == "file":
        out = env / "old-output.txt"
        out.write_text("keep")
        return out
    out = env / "old-output"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    return out


def _intact(out: Path) -> None:
    if out.is_dir():
        assert (out / "notes.txt").read_text() == "keep"
    else:
        assert out.read_text() == "keep"
    leftovers = [
        p.name for p in out.parent.iterdir() if _output.STAGING in p.name or _output.RETIRED in p.name
    ]
    assert not leftovers


def _run(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("tsi: error: "), (argv, err)
    return err[0]


@pytest.mark.parametrize("key", sorted(k for k in WRITERS if WRITERS[k][1] != "state"))
def test_non_empty_output_needs_overwrite(key, env, capsys):
    out = _make_output(key, env)
    err = _run(_argv(key, env, out), capsys)
    assert "--overwrite" in err and ("not empty" in err or "already exists" in err)
    _intact(out)


@pytest.mark.parametrize("key", sorted(k for k in WRITERS if WRITERS[k][1] != "state"))
def test_overwrite_passes_the_check_and_a_failure_keeps_the_old_output(key, env, capsys):
    out = _make_output(key, env)
    err = _run([*_argv(key, env, out), "--overwrite"], capsys)
    assert "not empty" not in err and "already exists" not in err  # the check passed; the work failed
    _intact(out)


def _store(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")


def _sae(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_text("{}")
    (folder / "sae_weights.safetensors").write_bytes(b"")


def _lens(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "tuned_lens.json").write_text("{}")


PROTECTED = {"store": _store, "sae": _sae, "lens": _lens}
DIR_WRITERS = sorted(k for k in WRITERS if WRITERS[k][1] == "dir")


@pytest.mark.parametrize("what", sorted(PROTECTED))
@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("key", DIR_WRITERS)
def test_a_store_an_sae_or_a_lens_is_never_replaced(key, what, nested, env, capsys):
    out = env / "precious"
    PROTECTED[what](out / "inner" if nested else out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    err = _run([*_argv(key, env, out), "--overwrite"], capsys)
    assert "never" in err and str(out) in err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


@pytest.mark.parametrize("what", sorted(PROTECTED))
@pytest.mark.parametrize("key", sorted(WRITERS))
def test_nothing_is_written_inside_a_store_an_sae_or_a_lens(key, what, env, capsys):
    folder = env / "precious"
    PROTECTED[what](folder)
    before = sorted(folder.iterdir())
    out = folder / ("new.txt" if WRITERS[key][1] == "file" else "new")
    err = _run([*_argv(key, env, out), "--overwrite"], capsys)
    assert "inside" in err and "never writes into" in err
    assert sorted(folder.iterdir()) == before


OVERLAPS = [
    (key, relation)
    for key in sorted(set(WRITERS) - NO_INPUT)
    for relation in ("same", "output holds input", "input holds output")
    if not (WRITERS[key][1] == "file" and relation == "output holds input")  # a file holds nothing
]


@pytest.mark.parametrize("key, relation", OVERLAPS)
def test_an_input_is_never_written_into_or_replaced(key, relation, env, capsys):
    kind = WRITERS[key][1]
    base = env / "mine"
    base.mkdir()
    (base / "notes.txt").write_text("keep")
    if relation == "same":
        out = inp = base / "notes.txt" if kind == "file" else base
    elif relation == "output holds input":
        out, inp = base, base / "notes.txt"
    else:
        out, inp = base / ("new.txt" if kind == "file" else "new"), base
    err = _run([*_argv(key, env, out, inp=str(inp)), "--overwrite"], capsys)
    assert "never writes into or replaces an input" in err
    assert (base / "notes.txt").read_text() == "keep" and sorted(p.name for p in base.iterdir()) == [
        "notes.txt"
    ]


def test_checkpoint_dir_may_not_overlap_the_output(env, capsys):
    key = ("train-sae", "checkpoint_dir")
    out = env / "sae"
    err = _run(_argv(key, env, out / "ckpt", other=out), capsys)
    assert "never writes into or replaces an input" in err and not out.exists()


def test_overwrite_refuses_the_current_and_home_folders(env, capsys, monkeypatch):
    work = env / "work"
    (work / "sub").mkdir(parents=True)
    (work / "sub" / "x.txt").write_text("keep")
    monkeypatch.chdir(work / "sub")
    err = _run(["bench", "--quick", "--out", str(work), "--overwrite"], capsys)
    assert "the current folder" in err and (work / "sub" / "x.txt").read_text() == "keep"


# ---- the atomic replacement itself -------------------------------------------------------------
def _args(tmp_path, **values) -> argparse.Namespace:
    return argparse.Namespace(overwrite=True, **values)


def test_replacement_swaps_in_the_new_folder_only_at_the_end(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    target = _output.output_dir(_args(tmp_path, out=str(out)), "out")
    assert target.replace and target.stage
    with target.writing() as folder:
        assert folder != out and folder.parent == out.parent
        (folder / "new.txt").write_text("new")
        assert (out / "old.txt").read_text() == "old"  # untouched until the block ends
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary sibling left


def test_a_failure_while_writing_leaves_the_old_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    target = _output.output_dir(_args(tmp_path, out=str(out)), "out")
    with pytest.raises(RuntimeError), target.writing() as folder:
        (folder / "half.txt").write_text("half")
        raise RuntimeError("disk full")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_new_folder_appears_only_when_complete(tmp_path):
    out = tmp_path / "a" / "new"
    target = _output.output_dir(argparse.Namespace(overwrite=False, out=str(out)), "out")
    with pytest.raises(KeyboardInterrupt), target.writing():
        raise KeyboardInterrupt
    assert not out.exists()
    with target.writing() as folder:
        (folder / "x").write_text("x")
    assert (out / "x").read_text() == "x"


def test_train_sae_replaces_an_old_output_atomically(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    torch.save(torch.randn(256, 8, generator=g), tmp_path / "acts.pt")
    out = tmp_path / "sae"
    out.mkdir()
    (out / "old.txt").write_text("old")
    argv = ["train-sae", "--acts", str(tmp_path / "acts.pt"), "--d-sae", "16", "--k", "2", "--steps", "3",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 2 and "not empty" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    assert tsi.sae.load(out).cfg.d_sae == 16
    # now the folder holds an SAE: never replaced, and the store-like inputs of the README are refused too
    err = _run([*argv, "--overwrite"], capsys)
    assert "holds an SAE" in err and tsi.sae.load(out).cfg.d_sae == 16


def test_train_sae_into_its_own_store_is_refused(tmp_path, capsys):
    """The README's synopsis used the same folder for --store and --out; the store used to be replaced."""
    _store(tmp_path / "acts")
    (tmp_path / "acts" / "shard-0.safetensors").write_bytes(b"data")
    for extra in ([], ["--overwrite"]):
        argv = ["train-sae", "--store", str(tmp_path / "acts"), "--out", str(tmp_path / "acts"), *extra]
        err = _run(argv, capsys)
        assert "never" in err
    assert sorted(p.name for p in (tmp_path / "acts").iterdir()) == ["manifest.json", "shard-0.safetensors"]


def test_the_output_check_exists_in_one_place():
    """Only cli/_output.py judges an output path (empty? a store? an input?); every subcommand that declares an
    output checks it through output_dir / output_file / output_state."""
    cli = Path(_output.__file__).parent
    judging = re.compile(
        r"\b(scandir|iterdir|listdir|os\.walk)\b|is not empty|protected_kind|MANIFEST\b.*is_file"
    )
    for path in sorted(cli.glob("*.py")):
        if path.name == "_output.py":
            continue
        text = path.read_text()
        hits = [line for line in text.splitlines() if judging.search(line)]
        if path.name == "harvest.py":  # says "--resume" instead of "not empty" for a store; then output_dir
            hits = [line for line in hits if "MANIFEST" not in line]
        assert not hits, (path.name, hits)
        if "add_output(" in text:
            assert re.search(r"\boutput_(dir|file|state)\(", text), path.name
