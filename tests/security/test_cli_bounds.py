"""Every numeric option of attribute / lens / steer / patch / probe / report is range-checked at parse time,
the error names the range, and binary or undecodable input files and null probe labels are named."""

from __future__ import annotations

import argparse
import json

import pytest

from torch_shard_interpret.cli._bounds import float_in, int_in, read_text
from torch_shard_interpret.cli.main import main
from torch_shard_interpret.core import InputError

P = "The cat"
CASES = [
    (["attribute", P, "--method", "ig", "--steps", "1000000000"], "--steps", "from 1 to 4096, not 1000000000"),
    (["attribute", P, "--steps", "0"], "--steps", "from 1 to 4096, not 0"),
    (["attribute", P, "--top", "-1"], "--top", "from 1 to 1000, not -1"),
    (["attribute", P, "--top", "ten"], "--top", "not 'ten'"),
    (["lens", P, "--layers", "-3"], "--layers", "from 1 to 1000, not -3"),
    (["lens", P, "--steps", "100000000"], "--steps", "from 1 to 100000"),
    (["steer", "--positive", "a", "--negative", "b", "--prompt", "x", "--max-new-tokens", "1000000000"],
     "--max-new-tokens", "from 1 to 2048, not 1000000000"),
    (["steer", "--positive", "a", "--negative", "b", "--prompt", "x", "--scale", "nan"], "--scale",
     "finite number in [-1000, 1000], not nan"),
    (["steer", "--positive", "a", "--negative", "b", "--prompt", "x", "--scale", "inf"], "--scale", "not inf"),
    (["steer", "--positive", "a", "--negative", "b", "--prompt", "x", "--scale", "1e9"], "--scale", "not 1e9"),
    (["patch", "--clean", "a", "--corrupt", "b", "--target", " a", "--baseline", " b", "--top", "-1"], "--top",
     "from 1 to 1000, not -1"),
    (["patch", "--clean", "a", "--corrupt", "b", "--target", " a", "--baseline", " b", "--batch-size", "0"],
     "--batch-size", "from 1 to 4096, not 0"),
    (["probe", "--data", "d.jsonl", "--val-fraction", "0"], "--val-fraction", "in (0, 0.9], not 0"),
    (["probe", "--data", "d.jsonl", "--val-fraction", "1.5"], "--val-fraction", "not 1.5"),
    (["probe", "--data", "d.jsonl", "--val-fraction", "nan"], "--val-fraction", "not nan"),
    (["probe", "--data", "d.jsonl", "--seed", "-1"], "--seed", "from 0 to 4294967295, not -1"),
    (["report", P, "--top-heads", "-2"], "--top-heads", "from 0 to 64, not -2"),
]  # fmt: skip


@pytest.mark.parametrize("argv, option, needle", CASES, ids=[" ".join(c[0][:1] + c[0][-2:]) for c in CASES])
def test_out_of_range_option_is_refused_naming_the_range(capsys, argv, option, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and needle in err and "Traceback" not in err


def test_range_types_accept_the_bounds():
    assert int_in(1, 5)("1") == 1 and int_in(1, 5)("5") == 5
    assert float_in(0, 1, open_lo=True)("1") == 1.0 and float_in(-1, 1)("-1") == -1.0
    for bad in ("0", "6", "1.5", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            int_in(1, 5)(bad)
    for bad in ("0", "nan", "-inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            float_in(0, 1, open_lo=True)(bad)


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"\x00\x01\x02binary", "is a binary file"),
        (b"caf\xe9 latin-1\n", "is not UTF-8 text (undecodable byte at offset 3)"),
    ],
)
def test_binary_and_undecodable_files_are_named(tmp_path, capsys, content, needle):
    f = tmp_path / "texts.txt"
    f.write_bytes(content)
    with pytest.raises(InputError, match="texts.txt"):
        read_text(f)
    assert main(["lens", "--train", str(f), "--save", str(tmp_path / "lens")]) != 0
    err = capsys.readouterr().err
    assert str(f) in err and needle in err and "Traceback" not in err
    assert main(["probe", "--data", str(f)]) != 0
    err = capsys.readouterr().err
    assert str(f) in err and needle in err


@pytest.mark.parametrize(
    "label, needle",
    [(None, "label null is not a class"), ([1], "label [1] is not a class"), ({"a": 1}, "label {\"a\": 1} is not a class"),
     (True, "label true is not a class")],
)  # fmt: skip
def test_probe_labels_are_validated(tmp_path, capsys, label, needle):
    f = tmp_path / "d.jsonl"
    rows = [{"text": "good", "label": 1}, {"text": "bad", "label": label}]
    f.write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["probe", "--data", str(f)]) != 0
    err = capsys.readouterr().err
    assert f"{f} line 2: {needle}" in err and "Traceback" not in err


def test_probe_text_must_be_a_string(tmp_path, capsys):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"text": 5, "label": 1}))
    assert main(["probe", "--data", str(f)]) != 0
    assert 'line 1: "text" must be a non-empty string' in capsys.readouterr().err
